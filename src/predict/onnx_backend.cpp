// ONNX files through OpenCV 4.6's DNN module.
#include <fmt/format.h>

#include <opencv2/core/utility.hpp>
#include <opencv2/dnn.hpp>

#include "predict/tensor_backend.h"

namespace infera::predict {
namespace {

class OnnxBackend final : public TensorBackend {
 public:
  OnnxBackend(cv::dnn::Net net, std::string path, std::vector<std::string> outputs)
      : net_(std::move(net)), path_(std::move(path)), outputs_(std::move(outputs)) {}

  Result<std::vector<BackendOutput>> run(const std::string& input_name, const float* input,
                                         const std::vector<int64_t>& shape) override {
    std::vector<int> dims(shape.begin(), shape.end());
    cv::Mat blob(static_cast<int>(dims.size()), dims.data(), CV_32F, const_cast<float*>(input));
    std::vector<cv::Mat> outs;
    try {
      net_.setInput(blob, input_name);
      net_.forward(outs, outputs_);
    } catch (const cv::Exception& e) {
      return Status::Internal(fmt::format("{}: OpenCV DNN failed: {}", path_, e.msg));
    } catch (const std::exception& e) {  // e.g. bad_alloc: nothing may leave the batcher thread
      return Status::Internal(fmt::format("{}: OpenCV DNN failed: {}", path_, e.what()));
    }
    std::vector<BackendOutput> result;
    for (size_t i = 0; i < outs.size(); ++i) {
      cv::Mat m = outs[i].isContinuous() ? outs[i] : outs[i].clone();
      if (m.type() != CV_32F) m.convertTo(m, CV_32F);
      BackendOutput o;
      o.name = outputs_[i];
      for (int d = 0; d < m.dims; ++d) o.shape.push_back(m.size[d]);
      o.data.assign(m.ptr<float>(), m.ptr<float>() + m.total());
      result.push_back(std::move(o));
    }
    return result;
  }

  std::string library() const override { return std::string("opencv ") + CV_VERSION; }

 private:
  cv::dnn::Net net_;
  std::string path_;
  std::vector<std::string> outputs_;
};

}  // namespace

Result<std::unique_ptr<TensorBackend>> load_onnx(const std::string& path, int threads,
                                                 const std::vector<std::string>& outputs) {
  cv::setNumThreads(std::max(1, threads));
  cv::dnn::Net net;
  try {
    net = cv::dnn::readNetFromONNX(path);
  } catch (const cv::Exception& e) {
    return Status::InvalidArgument(fmt::format(
        "{}: OpenCV {} cannot read this ONNX graph ({}); docs/PREDICTORS.md says how to export "
        "one it reads",
        path, CV_VERSION, e.msg));
  } catch (const std::exception& e) {
    return Status::InvalidArgument(fmt::format("{}: OpenCV {} cannot read this ONNX graph ({})", path,
                                               CV_VERSION, e.what()));
  }
  if (net.empty()) {
    return Status::InvalidArgument(fmt::format("{}: OpenCV {} read no network from this file", path, CV_VERSION));
  }
  for (const std::string& name : outputs) {
    if (net.getLayerId(name) < 0) {
      std::vector<std::string> graph_outputs = net.getUnconnectedOutLayersNames();
      return Status::InvalidArgument(fmt::format(
          "{}: the graph has no output '{}', which the config's 'outputs' names (its outputs: {})", path,
          name, fmt::join(graph_outputs, ", ")));
    }
  }
  net.setPreferableBackend(cv::dnn::DNN_BACKEND_OPENCV);
  net.setPreferableTarget(cv::dnn::DNN_TARGET_CPU);
  return std::unique_ptr<TensorBackend>(std::make_unique<OnnxBackend>(std::move(net), path, outputs));
}

}  // namespace infera::predict
