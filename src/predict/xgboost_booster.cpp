#include "predict/xgboost_booster.h"

#include <fmt/format.h>
#include <xgboost/c_api.h>

#include <cmath>
#include <nlohmann/json.hpp>
#include <random>

#include "core/log.h"
#include "predict/tree_shap.h"

namespace infera::predict {
namespace {

using nlohmann::json;

std::string last_error() {
  const char* e = XGBGetLastError();
  std::string s = e == nullptr ? "unknown error" : e;
  // XGBoost prefixes "[time] file:line: "; the rest is the message.
  if (auto pos = s.find(": "); s.starts_with("[") && pos != std::string::npos) s = s.substr(pos + 2);
  // Drop the stack trace XGBoost appends.
  if (auto pos = s.find("\nStack trace:"); pos != std::string::npos) s.resize(pos);
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

// numpy's __array_interface__ for a C-contiguous F32 matrix, as the C API takes it.
std::string array_interface(const float* data, int rows, int cols) {
  return fmt::format(R"({{"data":[{},true],"shape":[{},{}],"typestr":"<f4","version":3}})",
                     reinterpret_cast<uintptr_t>(data), rows, cols);
}

}  // namespace

std::string Booster::library_version() {
  int major = 0, minor = 0, patch = 0;
  XGBoostVersion(&major, &minor, &patch);
  return fmt::format("{}.{}.{}", major, minor, patch);
}

Booster::Booster() = default;

Result<std::unique_ptr<Booster>> Booster::load(const std::string& path, int threads) {
  std::unique_ptr<Booster> b(new Booster());
  b->path_ = path;
  auto fail = [&](const std::string& what) {
    return Status::InvalidArgument(
        fmt::format("{}: XGBoost {} cannot read this model: {}", path, library_version(), what));
  };
  BoosterHandle h = nullptr;
  if (XGBoosterCreate(nullptr, 0, &h) != 0) return fail(last_error());
  b->handle_ = h;
  if (XGBoosterLoadModel(h, path.c_str()) != 0) return fail(last_error());
  if (XGBoosterSetParam(h, "nthread", std::to_string(std::max(1, threads)).c_str()) != 0) {
    return fail(last_error());
  }
  bst_ulong n = 0;
  if (XGBoosterGetNumFeature(h, &n) != 0) return fail(last_error());
  b->num_features_ = static_cast<int>(n);
  if (b->num_features_ <= 0) return fail("the model takes no features");
  bst_ulong len = 0;
  const char** names = nullptr;
  if (XGBoosterGetStrFeatureInfo(h, "feature_name", &len, &names) == 0 && len > 0) {
    for (bst_ulong i = 0; i < len; ++i) b->feature_names_.emplace_back(names[i]);
    if (static_cast<int>(len) != b->num_features_) b->feature_names_.clear();
  }
  if (XGBoosterBoostedRounds(h, &b->rounds_) != 0) return fail(last_error());
  bst_ulong config_len = 0;
  const char* config = nullptr;
  if (XGBoosterSaveJsonConfig(h, &config_len, &config) != 0) return fail(last_error());
  json cfg = json::parse(std::string(config, config_len), nullptr, false);
  if (cfg.is_discarded()) return fail("its configuration is not JSON");
  try {
    b->objective_ = cfg.at("learner").at("objective").at("name").get<std::string>();
    const json& p = cfg.at("learner").at("learner_model_param");
    if (p.contains("num_class")) b->num_class_ = std::stoi(p["num_class"].get<std::string>());
  } catch (const std::exception& e) {
    return fail(fmt::format("its configuration lacks the objective ({})", e.what()));
  }
  // multi:softmax predicts the class index: one value per row.
  b->groups_ = b->objective_ == "multi:softprob" && b->num_class_ > 1 ? b->num_class_ : 1;
  if (b->objective_.starts_with("rank:")) {
    return Status::Unsupported(fmt::format("{}: ranking models ({}) are not served", path, b->objective_));
  }
  b->build_shap_tables();
  return b;
}

Booster::~Booster() {
  if (handle_ != nullptr) XGBoosterFree(handle_);
}

Status Booster::predict(const float* data, int rows, std::vector<float>& out) const {
  static constexpr char kConfig[] =
      R"({"type":0,"training":false,"iteration_begin":0,"iteration_end":0,"strict_shape":true,"missing":NaN,"cache_id":0})";
  const std::string values = array_interface(data, rows, num_features_);
  const bst_ulong* shape = nullptr;
  bst_ulong dim = 0;
  const float* result = nullptr;
  if (XGBoosterPredictFromDense(handle_, values.c_str(), kConfig, nullptr, &shape, &dim, &result) != 0) {
    return Status::Internal(fmt::format("{}: prediction failed: {}", path_, last_error()));
  }
  size_t total = 1;
  for (bst_ulong i = 0; i < dim; ++i) total *= shape[i];
  if (total != static_cast<size_t>(rows) * static_cast<size_t>(groups_)) {
    return Status::Internal(fmt::format("{}: prediction gave {} values for {} rows x {}", path_, total,
                                        rows, groups_));
  }
  out.assign(result, result + total);
  return Status::Ok();
}

void Booster::build_shap_tables() {
  auto fallback = [this](const std::string& why) {
    shap_method_ = "xgboost (" + why + ")";
    log::info("predict.shap_fallback", "{}: contributions from XGBoost's TreeShap: {}", path_, why);
  };
  bst_ulong len = 0;
  const char* buf = nullptr;
  if (XGBoosterSaveModelToBuffer(handle_, R"({"format":"json"})", &len, &buf) != 0) {
    return fallback("cannot read the model as JSON: " + last_error());
  }
  json model = json::parse(std::string_view(buf, len), nullptr, false);
  if (model.is_discarded()) return fallback("the model's JSON does not parse");
  // The expected values (bias column) do not depend on the row: take XGBoost's.
  const int width = num_features_ + 1, groups = contribution_groups();
  std::vector<float> zero_row(static_cast<size_t>(num_features_), 0.0f), reference;
  if (!xgboost_contributions(zero_row.data(), 1, reference).ok()) return fallback("no reference contributions");
  std::vector<float> bias;
  for (int g = 0; g < groups; ++g) bias.push_back(reference[static_cast<size_t>(g * width + num_features_)]);
  auto shap = TreeShap::from_model_json(model, std::move(bias));
  if (!shap.ok()) return fallback(shap.status().message());
  // Checked against XGBoost on rows around its split values (and missing values).
  std::mt19937 rng(12345);
  std::vector<float> rows;
  const auto& trees = model["learner"]["gradient_booster"]["model"]["trees"];
  std::vector<std::vector<float>> thresholds(static_cast<size_t>(num_features_));
  for (const auto& t : trees) {
    const auto& idx = t["split_indices"];
    const auto& cond = t["split_conditions"];
    const auto& lc = t["left_children"];
    for (size_t i = 0; i < idx.size(); ++i) {
      if (lc[i].get<int>() >= 0) thresholds[idx[i].get<size_t>()].push_back(cond[i].get<float>());
    }
  }
  constexpr int kCheckRows = 64;
  for (int r = 0; r < kCheckRows; ++r) {
    for (int f = 0; f < num_features_; ++f) {
      const auto& th = thresholds[static_cast<size_t>(f)];
      float v = 0;
      if (r % 16 == 15) {
        v = std::nanf("");
      } else if (!th.empty()) {
        v = th[rng() % th.size()] + (rng() % 2 ? 1e-3f : -1e-3f) * (1.0f + std::fabs(th[0]));
      }
      rows.push_back(v);
    }
  }
  std::vector<float> ours, theirs;
  if (!xgboost_contributions(rows.data(), kCheckRows, theirs).ok()) return fallback("no reference contributions");
  (*shap)->explain(rows.data(), kCheckRows, ours);
  double worst = 0;
  for (size_t i = 0; i < ours.size(); ++i) {
    worst = std::max(worst, std::fabs(static_cast<double>(ours[i]) - theirs[i]) / (1e-3 + std::fabs(theirs[i])));
  }
  if (ours.size() != theirs.size() || worst > 1e-3) {
    return fallback(fmt::format("tables disagree with XGBoost (relative error {:.2g})", worst));
  }
  shap_ = std::move(shap).value();
  shap_method_ = "tables";
}

Status Booster::contributions(const float* data, int rows, std::vector<float>& out) const {
  if (shap_) {
    shap_->explain(data, rows, out);
    return Status::Ok();
  }
  return xgboost_contributions(data, rows, out);
}

Status Booster::xgboost_contributions(const float* data, int rows, std::vector<float>& out) const {
  const std::string values = array_interface(data, rows, num_features_);
  DMatrixHandle dm = nullptr;
  if (XGDMatrixCreateFromDense(values.c_str(), R"({"missing":NaN,"nthread":1})", &dm) != 0) {
    return Status::Internal(fmt::format("{}: contributions failed: {}", path_, last_error()));
  }
  static constexpr char kConfig[] =
      R"({"type":2,"training":false,"iteration_begin":0,"iteration_end":0,"strict_shape":true})";
  const bst_ulong* shape = nullptr;
  bst_ulong dim = 0;
  const float* result = nullptr;
  const int rc = XGBoosterPredictFromDMatrix(handle_, dm, kConfig, &shape, &dim, &result);
  if (rc != 0) {
    std::string e = last_error();
    XGDMatrixFree(dm);
    return Status::Internal(fmt::format("{}: contributions failed: {}", path_, e));
  }
  size_t total = 1;
  for (bst_ulong i = 0; i < dim; ++i) total *= shape[i];
  // strict_shape: rows x groups x (features + 1); multi:softmax reports num_class groups.
  const size_t per_row = total / static_cast<size_t>(rows);
  const size_t want =
      static_cast<size_t>(contribution_groups()) * static_cast<size_t>(num_features_ + 1);
  if (per_row == want) {
    out.assign(result, result + total);
  } else {
    XGDMatrixFree(dm);
    return Status::Internal(fmt::format("{}: contributions gave {} values per row, expected {}",
                                        path_, per_row, want));
  }
  XGDMatrixFree(dm);
  return Status::Ok();
}

}  // namespace infera::predict
