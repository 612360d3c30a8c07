// Kind "xgboost" (predict/predict.h): a booster (plus ensemble members or quantile
// boosters), its schema, and two dynamic batchers — one for predictions, one for
// predictions with SHAP contributions, so a request that does not ask for feature
// importance never pays for it.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "models/model.h"
#include "predict/feature_schema.h"
#include "predict/predict.h"
#include "predict/tensor_backend.h"
#include "predict/xgboost_booster.h"
#include "sched/batcher.h"

namespace infera::predict {
namespace {

using models::LoadedModel;
using models::ModelSpec;
using nlohmann::json;

constexpr char kPrediction[] = "prediction";
constexpr char kImportance[] = "feature_importance";
constexpr char kLower[] = "prediction_lower";
constexpr char kUpper[] = "prediction_upper";
constexpr char kStd[] = "prediction_std";

// The two-sided standard normal quantile for `coverage` (Acklam's rational
// approximation of the inverse normal CDF; |error| < 1.2e-9).
double normal_quantile_two_sided(double coverage) {
  const double p = 0.5 + coverage / 2;
  static constexpr double a[] = {-3.969683028665376e+01, 2.209460984245205e+02,
                                 -2.759285104469687e+02, 1.383577518672690e+02,
                                 -3.066479806614716e+01, 2.506628277459239e+00};
  static constexpr double b[] = {-5.447609879822406e+01, 1.615858368580409e+02,
                                 -1.556989798598866e+02, 6.680131188771972e+01,
                                 -1.328068155288572e+01};
  static constexpr double c[] = {-7.784894002430293e-03, -3.223964580411365e-01,
                                 -2.400758277161838e+00, -2.549732539343734e+00,
                                 4.374664141464968e+00,  2.938163982698783e+00};
  static constexpr double d[] = {7.784695709041462e-03, 3.224671290700398e-01,
                                 2.445134137142996e+00, 3.754408661907416e+00};
  if (p > 0.97575) {
    const double q = std::sqrt(-2 * std::log(1 - p));
    return -(((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
           ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
  }
  const double q = p - 0.5, r = q * q;
  return (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
         (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
}

std::string default_schema_path(const std::string& model_path) {
  std::filesystem::path p(model_path);
  return (p.parent_path() / (p.stem().string() + ".schema.json")).string();
}

std::string schema_path_of(const ModelSpec& spec) {
  return spec.schema.empty() ? default_schema_path(spec.path) : spec.schema;
}


class XgboostModel final : public LoadedModel, public models::Predictor {
 public:
  XgboostModel(std::unique_ptr<Booster> main, std::vector<std::unique_ptr<Booster>> others,
               TabularSchema schema, const ModelSpec& spec, sched::BatcherConfig bc,
               obs::Registry& metrics)
      : main_(std::move(main)), others_(std::move(others)), schema_(std::move(schema)) {
    for (const auto& f : schema_.features) names_.push_back(f.name);
    const int64_t features = main_->num_features();
    inputs_.push_back({"input", "FP32", {-1, features}});
    outputs_.push_back({kPrediction, "FP32", {-1, main_->groups()}});
    outputs_.push_back(
        {kImportance, "FP32", {-1, static_cast<int64_t>(main_->contribution_groups()) * (features + 1)}});
    if (has_interval()) {
      outputs_.push_back({kLower, "FP32", {-1, 1}});
      outputs_.push_back({kUpper, "FP32", {-1, 1}});
    }
    if (schema_.uncertainty.method == Uncertainty::Method::kEnsemble) {
      outputs_.push_back({kStd, "FP32", {-1, 1}});
    }
    std::vector<sched::TensorSpec> in = {{"input", features}};
    bc.model = spec.name;
    plain_ = std::make_unique<sched::DynamicBatcher>(
        bc, in, [this](const std::vector<sched::Tensor>& x, int rows) { return run(x[0], rows, false); },
        &metrics);
    bc.model = spec.name + "+importance";
    explained_ = std::make_unique<sched::DynamicBatcher>(
        bc, in, [this](const std::vector<sched::Tensor>& x, int rows) { return run(x[0], rows, true); },
        &metrics);
    max_batch_size_ = bc.max_batch_size;
    bytes_ = 0;
    for (const std::string& p : files()) bytes_ += 2 * models::model_file_bytes(p);
  }

  // LoadedModel
  uint64_t bytes() const override { return bytes_; }
  Status warm_up() override {
    Status st = plain_->warm_up();
    if (!st.ok()) return st;
    return explained_->warm_up();
  }
  Progress progress() const override {
    auto a = plain_->stats(), b = explained_->stats();
    return {static_cast<int64_t>(a.queued + b.queued), static_cast<int64_t>(a.batches + b.batches)};
  }
  uint64_t drop_caches() override { return 0; }
  Predictor* predictor() override { return this; }
  json describe() const override {
    auto a = plain_->stats(), b = explained_->stats();
    return {{"library", "xgboost " + Booster::library_version()},
            {"objective", main_->objective()},
            {"features", main_->num_features()},
            {"classes", main_->num_class()},
            {"rounds", main_->rounds()},
            {"uncertainty", to_string(schema_.uncertainty.method)},
            {"shap", main_->shap_method()},
            {"max_batch_size", max_batch_size_},
            {"batches", a.batches + b.batches},
            {"rows", a.rows + b.rows},
            {"queued", a.queued + b.queued},
            {"expired", a.expired + b.expired},
            {"rejected", a.rejected + b.rejected}};
  }

  // Predictor
  const std::vector<models::TensorSpec>& inputs() const override { return inputs_; }
  const std::vector<models::TensorSpec>& outputs() const override { return outputs_; }
  int max_batch_rows() const override { return max_batch_size_; }
  const std::vector<std::string>& feature_names() const override { return names_; }
  Status features_to_row(const json& features, float* row) const override {
    return predict::features_to_row(schema_, features, row);
  }
  json schema() const override {
    json j = schema_json(schema_);
    j["task"] = task();
    j["objective"] = main_->objective();
    j["importance_space"] = margin_is_prediction() ? "prediction" : "margin";
    j["inputs"] = json::array();
    for (const auto& t : inputs_) j["inputs"].push_back({{"name", t.name}, {"datatype", t.datatype}, {"shape", t.shape}});
    j["outputs"] = json::array();
    for (const auto& t : outputs_) j["outputs"].push_back({{"name", t.name}, {"datatype", t.datatype}, {"shape", t.shape}});
    return j;
  }

  void predict(Request request, Done done) override {
    if (request.inputs.size() != 1 || request.inputs[0].name != "input") {
      return done(Status::InvalidArgument(fmt::format(
          "the model takes one input named 'input' of shape [rows, {}]", main_->num_features())));
    }
    models::Tensor& in = request.inputs[0];
    const int64_t features = main_->num_features();
    int64_t rows = 0;
    if (in.shape.size() == 2 && in.shape[1] == features) {
      rows = in.shape[0];
    } else if (in.shape.size() == 1 && in.shape[0] == features) {
      rows = 1;
    } else {
      std::string shape;
      for (size_t i = 0; i < in.shape.size(); ++i) shape += (i ? "," : "") + std::to_string(in.shape[i]);
      return done(Status::InvalidArgument(fmt::format(
          "input 'input' has shape [{}]; the model takes [rows, {}]", shape, features)));
    }
    if (rows < 1 || static_cast<size_t>(rows * features) != in.data.size()) {
      return done(Status::InvalidArgument(fmt::format(
          "input 'input' has {} values, not rows x {} = {}", in.data.size(), features, rows * features)));
    }
    bool explain = request.outputs.empty();
    std::vector<std::string> wanted = request.outputs;
    for (const std::string& name : wanted) {
      auto it = std::find_if(outputs_.begin(), outputs_.end(),
                             [&](const models::TensorSpec& t) { return t.name == name; });
      if (it == outputs_.end()) {
        std::string list;
        for (const auto& t : outputs_) list += (list.empty() ? "" : ", ") + t.name;
        return done(Status::InvalidArgument(
            fmt::format("output '{}' is not one of the model's outputs ({})", name, list)));
      }
      if (name == kImportance) explain = true;
    }
    sched::DynamicBatcher& batcher = explain ? *explained_ : *plain_;
    if (rows > max_batch_size_) {
      return done(Status::InvalidArgument(fmt::format(
          "{} rows in one request; the model takes at most {} (its max_batch_size)", rows, max_batch_size_)));
    }
    sched::DynamicBatcher::Request r;
    r.inputs.push_back({"input", features, std::move(in.data)});
    r.rows = static_cast<int>(rows);
    r.priority = request.priority;
    r.deadline = request.deadline;
    batcher.submit(std::move(r), [wanted = std::move(wanted), done = std::move(done)](
                                     Result<std::vector<sched::Tensor>> result) {
      if (!result.ok()) return done(result.status());
      std::vector<models::Tensor> out;
      for (sched::Tensor& t : *result) {
        if (!wanted.empty() && std::find(wanted.begin(), wanted.end(), t.name) == wanted.end()) continue;
        const auto width = t.width;
        const auto rows_out = static_cast<int64_t>(t.data.size()) / std::max<int64_t>(1, width);
        out.push_back({std::move(t.name), {rows_out, width}, std::move(t.data)});
      }
      done(std::move(out));
    });
  }

 private:
  bool has_interval() const {
    return main_->groups() == 1 && main_->num_class() <= 1 &&
           schema_.uncertainty.method != Uncertainty::Method::kNone;
  }
  bool margin_is_prediction() const {
    const std::string& o = main_->objective();
    return o == "reg:squarederror" || o == "reg:linear" || o == "reg:absoluteerror" ||
           o == "reg:pseudohubererror" || o == "reg:squaredlogerror";
  }
  std::string task() const {
    if (main_->num_class() > 1) return "multiclass";
    const std::string& o = main_->objective();
    if (o.starts_with("binary:")) return "binary";
    return "regression";
  }
  std::vector<std::string> files() const {
    std::vector<std::string> f = {main_->path()};
    for (const auto& b : others_) f.push_back(b->path());
    return f;
  }

  // One batch: `x` is [rows, features]. Batcher thread.
  Result<std::vector<sched::Tensor>> run(const sched::Tensor& x, int rows, bool explain) const {
    const size_t n = static_cast<size_t>(rows);
    const int groups = main_->groups();
    std::vector<sched::Tensor> out;
    sched::Tensor pred{kPrediction, groups, {}};
    Status st = main_->predict(x.data.data(), rows, pred.data);
    if (!st.ok()) return st;
    const Uncertainty& u = schema_.uncertainty;
    std::vector<float> lower, upper, spread;
    if (u.method == Uncertainty::Method::kEnsemble) {
      // The prediction is the members' mean; the interval mean +- z * their spread.
      std::vector<double> sum(pred.data.begin(), pred.data.end());
      std::vector<double> sq(sum.size());
      for (size_t i = 0; i < sum.size(); ++i) sq[i] = sum[i] * sum[i];
      std::vector<float> member;
      for (const auto& b : others_) {
        st = b->predict(x.data.data(), rows, member);
        if (!st.ok()) return st;
        for (size_t i = 0; i < sum.size(); ++i) {
          sum[i] += member[i];
          sq[i] += static_cast<double>(member[i]) * member[i];
        }
      }
      const double m = static_cast<double>(others_.size() + 1);
      const double z = normal_quantile_two_sided(u.coverage);
      spread.resize(n);
      for (size_t i = 0; i < sum.size(); ++i) {
        const double mean = sum[i] / m;
        pred.data[i] = static_cast<float>(mean);
        if (groups == 1) {
          const double var = std::max(0.0, sq[i] / m - mean * mean) * m / std::max(1.0, m - 1);
          spread[i] = static_cast<float>(std::sqrt(var));
        }
      }
      if (has_interval()) {
        lower.resize(n);
        upper.resize(n);
        for (size_t i = 0; i < n; ++i) {
          lower[i] = static_cast<float>(pred.data[i] - z * spread[i]);
          upper[i] = static_cast<float>(pred.data[i] + z * spread[i]);
        }
      }
    } else if (u.method == Uncertainty::Method::kConformal && has_interval()) {
      lower.resize(n);
      upper.resize(n);
      for (size_t i = 0; i < n; ++i) {
        lower[i] = static_cast<float>(pred.data[i] - u.conformal_q);
        upper[i] = static_cast<float>(pred.data[i] + u.conformal_q);
      }
    } else if (u.method == Uncertainty::Method::kQuantile && has_interval()) {
      st = others_[0]->predict(x.data.data(), rows, lower);
      if (st.ok()) st = others_[1]->predict(x.data.data(), rows, upper);
      if (!st.ok()) return st;
      for (size_t i = 0; i < n; ++i) {  // crossing quantile models: keep the interval ordered
        if (lower[i] > upper[i]) std::swap(lower[i], upper[i]);
      }
    }
    out.push_back(std::move(pred));
    if (explain) {
      const int64_t width =
          static_cast<int64_t>(main_->contribution_groups()) * (main_->num_features() + 1);
      sched::Tensor importance{kImportance, width, {}};
      st = main_->contributions(x.data.data(), rows, importance.data);
      if (!st.ok()) return st;
      if (u.method == Uncertainty::Method::kEnsemble) {  // mean of the members', like the prediction
        std::vector<float> member;
        for (const auto& b : others_) {
          st = b->contributions(x.data.data(), rows, member);
          if (!st.ok()) return st;
          for (size_t i = 0; i < member.size(); ++i) importance.data[i] += member[i];
        }
        const auto m = static_cast<float>(others_.size() + 1);
        for (float& v : importance.data) v /= m;
      }
      out.push_back(std::move(importance));
    }
    if (!lower.empty()) {
      out.push_back({kLower, 1, std::move(lower)});
      out.push_back({kUpper, 1, std::move(upper)});
    }
    if (u.method == Uncertainty::Method::kEnsemble) out.push_back({kStd, 1, std::move(spread)});
    return out;
  }

  std::unique_ptr<Booster> main_;
  std::vector<std::unique_ptr<Booster>> others_;  // ensemble members, or lower and upper quantile
  TabularSchema schema_;
  std::vector<std::string> names_;
  std::vector<models::TensorSpec> inputs_, outputs_;
  int max_batch_size_ = 0;
  uint64_t bytes_ = 0;
  // Declared last: destroyed first, so no batch runs on a half-destroyed model.
  std::unique_ptr<sched::DynamicBatcher> plain_, explained_;
};

class XgboostKind final : public models::ModelKind {
 public:
  XgboostKind(PredictKindConfig config, obs::Registry& metrics) : config_(config), metrics_(metrics) {}

  std::string name() const override { return "xgboost"; }

  Status validate(const ModelSpec& spec) const override {
    std::error_code ec;
    if (spec.path.empty()) return Status::InvalidArgument(fmt::format("model '{}': no path given", spec.name));
    if (!std::filesystem::is_regular_file(spec.path, ec)) {
      return Status::InvalidArgument(fmt::format("model '{}': {}: no such file", spec.name, spec.path));
    }
    if (!spec.schema.empty() && !std::filesystem::is_regular_file(spec.schema, ec)) {
      return Status::InvalidArgument(
          fmt::format("model '{}': schema {}: no such file", spec.name, spec.schema));
    }
    for (int s : spec.preferred_batch_size) {
      if (spec.max_batch_size > 0 && s > spec.max_batch_size) {
        return Status::InvalidArgument(fmt::format(
            "model '{}': preferred_batch_size {} is above max_batch_size {}", spec.name, s,
            spec.max_batch_size));
      }
    }
    return Status::Ok();
  }

  uint64_t estimate_bytes(const ModelSpec& spec) const override {
    return 2 * models::model_file_bytes(spec.path);
  }

  std::string identity(const ModelSpec& spec) const override {
    std::string id = models::model_file_identity(spec.path);
    const std::string schema = schema_path_of(spec);
    std::error_code ec;
    if (std::filesystem::is_regular_file(schema, ec)) id += "|" + models::model_file_identity(schema);
    return id;
  }

  Result<std::unique_ptr<LoadedModel>> load(const ModelSpec& spec) override {
    auto main = Booster::load(spec.path, config_.threads);
    if (!main.ok()) return main.status();
    const Booster& b = **main;
    const std::string schema_path = schema_path_of(spec);
    std::error_code ec;
    TabularSchema schema;
    if (std::filesystem::is_regular_file(schema_path, ec)) {
      auto parsed = read_schema_file(schema_path, b.feature_names(), b.num_features());
      if (!parsed.ok()) return parsed.status();
      schema = std::move(parsed).value();
    } else if (!spec.schema.empty()) {
      return Status::NotFound(fmt::format("{}: no such schema file", schema_path));
    } else {
      schema = schema_from_model(b.feature_names(), b.num_features());
    }
    if (!schema.classes.empty() && b.num_class() > 1 &&
        static_cast<int>(schema.classes.size()) != b.num_class()) {
      return Status::InvalidArgument(fmt::format("{}: lists {} classes but the model has {}",
                                                 schema_path, schema.classes.size(), b.num_class()));
    }
    std::vector<std::unique_ptr<Booster>> others;
    const Uncertainty& u = schema.uncertainty;
    std::vector<std::string> extra = u.members;
    if (u.method == Uncertainty::Method::kQuantile) extra = {u.lower_path, u.upper_path};
    for (const std::string& path : extra) {
      auto other = Booster::load(path, config_.threads);
      if (!other.ok()) return other.status();
      if ((*other)->num_features() != b.num_features() || (*other)->groups() != b.groups()) {
        return Status::InvalidArgument(fmt::format(
            "{}: takes {} features with {} outputs, but {} takes {} with {}", path,
            (*other)->num_features(), (*other)->groups(), spec.path, b.num_features(), b.groups()));
      }
      others.push_back(std::move(other).value());
    }
    sched::BatcherConfig bc = batcher_config(spec, config_);
    Status checked = sched::DynamicBatcher::check(bc, {{"input", b.num_features()}});
    if (!checked.ok()) {
      return Status::InvalidArgument(fmt::format("model '{}': {}", spec.name, checked.message()));
    }
    return std::unique_ptr<LoadedModel>(std::make_unique<XgboostModel>(
        std::move(main).value(), std::move(others), std::move(schema), spec, std::move(bc), metrics_));
  }

 private:
  PredictKindConfig config_;
  obs::Registry& metrics_;
};

}  // namespace

sched::BatcherConfig batcher_config(const models::ModelSpec& spec, const PredictKindConfig& config) {
  sched::BatcherConfig bc;
  bc.model = spec.name;
  bc.max_batch_size = spec.max_batch_size > 0 ? spec.max_batch_size : config.max_batch_size;
  bc.preferred_batch_sizes = spec.preferred_batch_size;
  bc.max_queue_delay = std::chrono::microseconds(
      spec.max_queue_delay_us >= 0 ? spec.max_queue_delay_us : config.max_queue_delay_us);
  bc.max_queue_size =
      static_cast<size_t>(spec.max_queue_size > 0 ? spec.max_queue_size : config.max_queue_size);
  return bc;
}

std::unique_ptr<models::ModelKind> make_xgboost_kind(PredictKindConfig config, obs::Registry& metrics) {
  return std::make_unique<XgboostKind>(config, metrics);
}

}  // namespace infera::predict
