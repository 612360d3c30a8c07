// Kinds "onnx" and "torchscript" (predict/predict.h): a model file, the config beside it
// (<model>.config.json or the models file's `schema`) declaring its tensors, and one
// dynamic batcher whose runner calls the runtime (predict/tensor_backend.h).
//
// Config:
//   {"inputs":  [{"name": "input", "shape": [-1, 3, 224, 224], "datatype": "FP32",
//                 "image": {"size": [224, 224], "mean": [...], "std": [...]}}],
//    "outputs": [{"name": "embedding", "shape": [-1, 512]}]}
// One input; dims after the batch fixed; outputs in the order the model returns them.
#include <fmt/format.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "models/model.h"
#include "predict/image_preprocess.h"
#include "predict/predict.h"
#include "predict/tensor_backend.h"
#include "sched/batcher.h"

namespace infera::predict {
namespace {

using models::LoadedModel;
using models::ModelSpec;
using nlohmann::json;

struct TensorConfig {
  std::vector<models::TensorSpec> inputs, outputs;
  std::optional<ImageSpec> image;
  std::string source;
};

std::string config_path_of(const ModelSpec& spec) {
  if (!spec.schema.empty()) return spec.schema;
  std::filesystem::path p(spec.path);
  return (p.parent_path() / (p.stem().string() + ".config.json")).string();
}

Result<models::TensorSpec> parse_tensor(const json& t, const std::string& where) {
  if (!t.is_object() || !t.contains("name") || !t["name"].is_string() || t["name"].get<std::string>().empty()) {
    return Status::InvalidArgument(where + " needs a 'name'");
  }
  models::TensorSpec spec;
  spec.name = t["name"].get<std::string>();
  const std::string at = fmt::format("{} '{}'", where, spec.name);
  if (!t.contains("shape") || !t["shape"].is_array() || t["shape"].size() < 2) {
    return Status::InvalidArgument(at + ": 'shape' must be [-1, dims...] (the batch first)");
  }
  for (size_t i = 0; i < t["shape"].size(); ++i) {
    const json& d = t["shape"][i];
    if (!d.is_number_integer()) return Status::InvalidArgument(at + ": 'shape' must hold integers");
    const int64_t v = d.get<int64_t>();
    if (i == 0 && v != -1) return Status::InvalidArgument(at + ": the first dimension is the batch: -1");
    if (i > 0 && (v < 1 || v > (1 << 24))) {
      return Status::InvalidArgument(at + ": dimensions after the batch must be fixed positive sizes");
    }
    spec.shape.push_back(v);
  }
  if (t.contains("datatype") && t["datatype"] != "FP32") {
    return Status::InvalidArgument(at + ": 'datatype' must be \"FP32\"");
  }
  return spec;
}

Result<TensorConfig> read_config(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return Status::NotFound(fmt::format(
        "{}: no such config file (tensor models declare their inputs and outputs there)", path));
  }
  std::stringstream text;
  text << in.rdbuf();
  json doc = json::parse(text.str(), nullptr, false);
  auto fail = [&](const std::string& m) { return Status::InvalidArgument(fmt::format("{}: {}", path, m)); };
  if (doc.is_discarded() || !doc.is_object()) return fail("not a JSON object");
  for (const auto& [key, v] : doc.items()) {
    if (key != "inputs" && key != "outputs" && key != "description") {
      return fail(fmt::format("unknown key '{}' (inputs, outputs)", key));
    }
  }
  TensorConfig c;
  c.source = path;
  for (const char* side : {"inputs", "outputs"}) {
    if (!doc.contains(side) || !doc[side].is_array() || doc[side].empty()) {
      return fail(fmt::format("'{}' must be a non-empty array of tensors", side));
    }
    for (const json& t : doc[side]) {
      auto spec = parse_tensor(t, std::string(side) == "inputs" ? "input" : "output");
      if (!spec.ok()) return fail(spec.status().message());
      (std::string(side) == "inputs" ? c.inputs : c.outputs).push_back(*spec);
    }
  }
  if (c.inputs.size() != 1) return fail("one input is supported ('inputs' has " + std::to_string(c.inputs.size()) + ")");
  const json& in0 = doc["inputs"][0];
  if (in0.contains("image")) {
    auto image = parse_image_spec(in0["image"]);
    if (!image.ok()) return fail(image.status().message());
    const auto& s = c.inputs[0].shape;
    const std::vector<int64_t> want =
        image->chw ? std::vector<int64_t>{-1, 3, image->height, image->width}
                   : std::vector<int64_t>{-1, image->height, image->width, 3};
    if (s != want) {
      return fail(fmt::format("input '{}': an image input of {}x{} ({}) has shape [{}]", c.inputs[0].name,
                              image->height, image->width, image->chw ? "CHW" : "HWC",
                              fmt::join(want, ", ")));
    }
    c.image = *image;
  }
  return c;
}

json tensors_json(const std::vector<models::TensorSpec>& tensors) {
  json a = json::array();
  for (const auto& t : tensors) a.push_back({{"name", t.name}, {"datatype", t.datatype}, {"shape", t.shape}});
  return a;
}

// One row of zeros through the model before it is served, so that a config that does not
// fit the model (the input's name or shape, the outputs' count or sizes) is refused at
// load, naming the config's file and key, rather than failing every request (warm-up
// may be off). Loader thread, before the batcher exists.
Status probe(TensorBackend& backend, const TensorConfig& c, const std::string& model_path) {
  const models::TensorSpec& in = c.inputs[0];
  std::vector<float> zeros(static_cast<size_t>(in.row_width()));
  std::vector<int64_t> shape = in.shape;
  shape[0] = 1;
  auto outs = backend.run(in.name, zeros.data(), shape);
  if (!outs.ok()) {
    return Status::InvalidArgument(fmt::format("{}: input '{}' of shape [{}] does not run through {}: {}",
                                               c.source, in.name, fmt::join(shape, ", "), model_path,
                                               outs.status().message()));
  }
  if (outs->size() < c.outputs.size()) {
    return Status::InvalidArgument(fmt::format("{}: 'outputs' declares {} tensors; {} returns {}", c.source,
                                               c.outputs.size(), model_path, outs->size()));
  }
  for (size_t i = 0; i < c.outputs.size(); ++i) {
    const BackendOutput& got = (*outs)[i];
    if (static_cast<int64_t>(got.data.size()) != c.outputs[i].row_width()) {
      return Status::InvalidArgument(fmt::format(
          "{}: output '{}' declares {} values per row (shape [{}]); {} gives {} (shape [{}])", c.source,
          c.outputs[i].name, c.outputs[i].row_width(), fmt::join(c.outputs[i].shape, ", "), model_path,
          got.data.size(), fmt::join(got.shape, ", ")));
    }
  }
  return Status::Ok();
}

class TensorModel final : public LoadedModel, public models::Predictor {
 public:
  TensorModel(std::unique_ptr<TensorBackend> backend, TensorConfig config, const ModelSpec& spec,
              int threads, sched::BatcherConfig bc, obs::Registry& metrics)
      : backend_(std::move(backend)), config_(std::move(config)), kind_(spec.kind), threads_(threads),
        batching_(bc) {
    max_batch_size_ = bc.max_batch_size;
    bytes_ = 2 * models::model_file_bytes(spec.path);
    batcher_ = std::make_unique<sched::DynamicBatcher>(
        bc, std::vector<sched::TensorSpec>{{config_.inputs[0].name, config_.inputs[0].row_width()}},
        [this](const std::vector<sched::Tensor>& x, int rows) { return run(x[0], rows); }, &metrics);
  }

  uint64_t bytes() const override { return bytes_; }
  Status warm_up() override { return batcher_->warm_up(); }
  Progress progress() const override {
    auto s = batcher_->stats();
    return {static_cast<int64_t>(s.queued), static_cast<int64_t>(s.batches)};
  }
  uint64_t drop_caches() override { return 0; }
  Predictor* predictor() override { return this; }
  json describe() const override {
    auto s = batcher_->stats();
    json d = {{"kind", kind_},
              {"library", backend_->library()},
              {"config", config_.source},
              {"inputs", tensors_json(config_.inputs)},
              {"outputs", tensors_json(config_.outputs)},
              {"threads", threads_},
              {"max_batch_size", max_batch_size_},
              {"preferred_batch_size", batching_.preferred_batch_sizes},
              {"max_queue_delay_us", batching_.max_queue_delay.count()},
              {"max_queue_size", batching_.max_queue_size},
              {"batches", s.batches},
              {"rows", s.rows},
              {"queued", s.queued},
              {"expired", s.expired},
              {"rejected", s.rejected}};
    if (config_.image) d["image"] = config_.image->to_json();
    return d;
  }

  const std::vector<models::TensorSpec>& inputs() const override { return config_.inputs; }
  const std::vector<models::TensorSpec>& outputs() const override { return config_.outputs; }
  int max_batch_rows() const override { return max_batch_size_; }
  Result<std::vector<float>> image_to_row(std::string_view encoded) const override {
    if (!config_.image) return Predictor::image_to_row(encoded);
    return predict::image_to_row(encoded, *config_.image);
  }
  json schema() const override {
    json j = {{"inputs", tensors_json(config_.inputs)}, {"outputs", tensors_json(config_.outputs)},
              {"config_source", config_.source}, {"task", "tensor"}};
    if (config_.image) j["inputs"][0]["image"] = config_.image->to_json();
    return j;
  }

  void predict(Request request, Done done) override {
    const models::TensorSpec& spec = config_.inputs[0];
    if (request.inputs.size() != 1 || request.inputs[0].name != spec.name) {
      return done(Status::InvalidArgument(fmt::format("the model takes one input named '{}'", spec.name)));
    }
    models::Tensor& in = request.inputs[0];
    const int64_t width = spec.row_width();
    const int64_t rows = in.shape.empty() ? 0 : in.shape[0];
    if (rows < 1 || static_cast<int64_t>(in.data.size()) != rows * width) {
      return done(Status::InvalidArgument(fmt::format("input '{}' needs rows x {} values", spec.name, width)));
    }
    if (rows > max_batch_size_) {
      return done(Status::InvalidArgument(fmt::format(
          "{} rows in one request; the model takes at most {} (its max_batch_size)", rows, max_batch_size_)));
    }
    for (const std::string& name : request.outputs) {
      if (std::none_of(config_.outputs.begin(), config_.outputs.end(),
                       [&](const models::TensorSpec& t) { return t.name == name; })) {
        return done(Status::InvalidArgument(fmt::format("output '{}' is not one of the model's outputs", name)));
      }
    }
    sched::DynamicBatcher::Request r;
    r.inputs.push_back({spec.name, width, std::move(in.data)});
    r.rows = static_cast<int>(rows);
    r.priority = request.priority;
    r.deadline = request.deadline;
    batcher_->submit(std::move(r), [this, wanted = std::move(request.outputs), done = std::move(done)](
                                       Result<std::vector<sched::Tensor>> result) {
      if (!result.ok()) return done(result.status());
      std::vector<models::Tensor> out;
      for (size_t i = 0; i < result->size(); ++i) {
        sched::Tensor& t = (*result)[i];
        if (!wanted.empty() && std::find(wanted.begin(), wanted.end(), t.name) == wanted.end()) continue;
        std::vector<int64_t> shape = config_.outputs[i].shape;
        shape[0] = static_cast<int64_t>(t.data.size()) / std::max<int64_t>(1, t.width);
        out.push_back({std::move(t.name), std::move(shape), std::move(t.data)});
      }
      done(std::move(out));
    });
  }

 private:
  // One batch through the runtime. Batcher thread.
  Result<std::vector<sched::Tensor>> run(const sched::Tensor& x, int rows) {
    std::vector<int64_t> shape = config_.inputs[0].shape;
    shape[0] = rows;
    auto outs = backend_->run(config_.inputs[0].name, x.data.data(), shape);
    if (!outs.ok()) return outs.status();
    if (outs->size() < config_.outputs.size()) {
      return Status::Internal(fmt::format("the model returned {} outputs; its config declares {}",
                                          outs->size(), config_.outputs.size()));
    }
    std::vector<sched::Tensor> result;
    for (size_t i = 0; i < config_.outputs.size(); ++i) {
      const models::TensorSpec& want = config_.outputs[i];
      BackendOutput& got = (*outs)[i];
      const int64_t width = want.row_width();
      if (got.data.size() != static_cast<size_t>(rows * width)) {
        return Status::Internal(fmt::format(
            "output '{}' has {} values for {} rows; its config declares {} per row", want.name,
            got.data.size(), rows, width));
      }
      result.push_back({want.name, width, std::move(got.data)});
    }
    return result;
  }

  std::unique_ptr<TensorBackend> backend_;
  TensorConfig config_;
  std::string kind_;
  int threads_ = 1;
  sched::BatcherConfig batching_;  // as the batcher was given it (describe())
  int max_batch_size_ = 0;
  uint64_t bytes_ = 0;
  std::unique_ptr<sched::DynamicBatcher> batcher_;  // last: stopped before the rest goes
};

using Loader = Result<std::unique_ptr<TensorBackend>> (*)(const std::string&, int,
                                                          const std::vector<std::string>&);

class TensorKind final : public models::ModelKind {
 public:
  TensorKind(std::string name, Loader loader, PredictKindConfig config, obs::Registry& metrics)
      : name_(std::move(name)), loader_(loader), config_(config), metrics_(metrics) {}

  std::string name() const override { return name_; }
  Status validate(const ModelSpec& spec) const override {
    std::error_code ec;
    if (!std::filesystem::is_regular_file(spec.path, ec)) {
      return Status::InvalidArgument(fmt::format("model '{}': {}: no such file", spec.name, spec.path));
    }
    return Status::Ok();
  }
  uint64_t estimate_bytes(const ModelSpec& spec) const override { return 2 * models::model_file_bytes(spec.path); }
  std::string identity(const ModelSpec& spec) const override {
    std::string id = models::model_file_identity(spec.path);
    std::error_code ec;
    const std::string c = config_path_of(spec);
    if (std::filesystem::is_regular_file(c, ec)) id += "|" + models::model_file_identity(c);
    return id;
  }
  Result<std::unique_ptr<LoadedModel>> load(const ModelSpec& spec) override {
    auto config = read_config(config_path_of(spec));
    if (!config.ok()) return config.status();
    std::vector<std::string> output_names;
    for (const auto& t : config->outputs) output_names.push_back(t.name);
    auto backend = loader_(spec.path, config_.threads, output_names);
    if (!backend.ok()) return backend.status();
    if (Status st = probe(**backend, *config, spec.path); !st.ok()) return st;
    sched::BatcherConfig bc = batcher_config(spec, config_);
    Status checked = sched::DynamicBatcher::check(bc, {{config->inputs[0].name, config->inputs[0].row_width()}});
    if (!checked.ok()) return Status::InvalidArgument(fmt::format("model '{}': {}", spec.name, checked.message()));
    return std::unique_ptr<LoadedModel>(
        std::make_unique<TensorModel>(std::move(backend).value(), std::move(config).value(), spec,
                                      config_.threads, bc, metrics_));
  }

 private:
  std::string name_;
  Loader loader_;
  PredictKindConfig config_;
  obs::Registry& metrics_;
};

}  // namespace

std::unique_ptr<models::ModelKind> make_onnx_kind(PredictKindConfig config, obs::Registry& metrics) {
  return std::make_unique<TensorKind>("onnx", &load_onnx, config, metrics);
}

#ifdef INFERA_WITH_TORCH
std::unique_ptr<models::ModelKind> make_torchscript_kind(PredictKindConfig config, obs::Registry& metrics) {
  return std::make_unique<TensorKind>("torchscript", &load_torchscript, config, metrics);
}
#endif

}  // namespace infera::predict
