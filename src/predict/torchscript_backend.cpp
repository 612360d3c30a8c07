// TorchScript files through LibTorch 1.13 (compiled only with INFERA_WITH_TORCH).
#include <fmt/format.h>
#include <ATen/Parallel.h>
#include <torch/script.h>
#include <torch/version.h>

#include "predict/tensor_backend.h"

namespace infera::predict {
namespace {

class TorchBackend final : public TensorBackend {
 public:
  TorchBackend(torch::jit::Module module, std::string path) : module_(std::move(module)), path_(std::move(path)) {}

  Result<std::vector<BackendOutput>> run(const std::string& /*input_name*/, const float* input,
                                         const std::vector<int64_t>& shape) override {
    try {
      c10::InferenceMode guard;
      torch::Tensor x = torch::from_blob(const_cast<float*>(input), shape, torch::kFloat32);
      torch::jit::IValue out = module_.forward({x});
      std::vector<torch::Tensor> tensors;
      if (out.isTensor()) {
        tensors.push_back(out.toTensor());
      } else if (out.isTuple()) {
        for (const auto& e : out.toTuple()->elements()) {
          if (!e.isTensor()) return Status::Internal(fmt::format("{}: forward() returned a tuple with a non-tensor", path_));
          tensors.push_back(e.toTensor());
        }
      } else if (out.isTensorList()) {
        for (const auto& t : out.toTensorVector()) tensors.push_back(t);
      } else {
        return Status::Internal(fmt::format("{}: forward() must return a tensor or a tuple of tensors", path_));
      }
      std::vector<BackendOutput> result;
      for (torch::Tensor& t : tensors) {
        t = t.to(torch::kFloat32).contiguous();
        BackendOutput o;
        o.shape.assign(t.sizes().begin(), t.sizes().end());
        o.data.assign(t.data_ptr<float>(), t.data_ptr<float>() + t.numel());
        result.push_back(std::move(o));
      }
      return result;
    } catch (const c10::Error& e) {
      return Status::Internal(fmt::format("{}: LibTorch failed: {}", path_, e.what_without_backtrace()));
    } catch (const std::exception& e) {
      // The interpreter's own errors (torch::jit::JITException: a shape the graph refuses, a
      // failed assert in forward()) are not c10::Errors; none may leave the batcher thread.
      return Status::Internal(fmt::format("{}: LibTorch failed: {}", path_, e.what()));
    }
  }

  std::string library() const override { return "libtorch " TORCH_VERSION; }

 private:
  torch::jit::Module module_;
  std::string path_;
};

}  // namespace

Result<std::unique_ptr<TensorBackend>> load_torchscript(const std::string& path, int threads,
                                                        const std::vector<std::string>& /*outputs*/) {
  try {
    at::set_num_threads(std::max(1, threads));
    torch::jit::Module module = torch::jit::load(path);
    module.eval();
    return std::unique_ptr<TensorBackend>(std::make_unique<TorchBackend>(std::move(module), path));
  } catch (const c10::Error& e) {
    return Status::InvalidArgument(
        fmt::format("{}: LibTorch {} cannot load this TorchScript file: {}", path, TORCH_VERSION,
                    e.what_without_backtrace()));
  } catch (const std::exception& e) {
    return Status::InvalidArgument(fmt::format("{}: LibTorch {} cannot load this TorchScript file: {}",
                                               path, TORCH_VERSION, e.what()));
  }
}

}  // namespace infera::predict
