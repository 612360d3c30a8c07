#include "api/prediction_service.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <mutex>

#include "auth/auth.h"
#include "cache/cache.h"
#include "http/server.h"
#include "models/registry.h"

namespace infera::api {
namespace {

constexpr char kImportance[] = "feature_importance";

// A cached row: u32 outputs, then per output u16 name length, the name, u32 width
// and width F32 values (little-endian, as the machine writes them).
std::string encode_row(const std::vector<models::Tensor>& outputs, size_t row) {
  std::string out;
  auto put = [&out](const void* p, size_t n) { out.append(static_cast<const char*>(p), n); };
  const auto count = static_cast<uint32_t>(outputs.size());
  put(&count, 4);
  for (const models::Tensor& t : outputs) {
    const auto len = static_cast<uint16_t>(t.name.size());
    const auto width = static_cast<uint32_t>(t.shape.size() > 1 ? t.shape[1] : 1);
    put(&len, 2);
    put(t.name.data(), len);
    put(&width, 4);
    put(t.data.data() + row * width, width * 4);
  }
  return out;
}

// Appends a cached row to `outputs` (created on the first row); false when malformed
// or not the same outputs as the rows before.
bool decode_row(const std::string& entry, std::vector<models::Tensor>& outputs, bool first) {
  size_t at = 0;
  auto get = [&](void* p, size_t n) {
    if (at + n > entry.size()) return false;
    std::memcpy(p, entry.data() + at, n);
    at += n;
    return true;
  };
  uint32_t count = 0;
  if (!get(&count, 4) || count > 64 || (!first && count != outputs.size())) return false;
  std::vector<models::Tensor> parsed(count);
  for (uint32_t i = 0; i < count; ++i) {
    uint16_t len = 0;
    uint32_t width = 0;
    if (!get(&len, 2) || at + len > entry.size()) return false;
    parsed[i].name.assign(entry.data() + at, len);
    at += len;
    if (!get(&width, 4) || width == 0 || width > (1u << 20)) return false;
    parsed[i].data.resize(width);
    if (!get(parsed[i].data.data(), width * 4ull)) return false;
    parsed[i].shape = {1, width};
    if (!first && (outputs[i].name != parsed[i].name || outputs[i].shape[1] != width)) return false;
  }
  if (at != entry.size()) return false;
  if (first) {
    for (auto& p : parsed) p.shape[0] = 0;
    outputs = std::move(parsed);
  }
  return true;
}

// One request's rows on their way: cached rows are filled in at once, the others as
// their predict() calls return.
struct Flight {
  std::mutex mu;
  PredictionService::Rows request;
  PredictionService::RowsDone done;
  std::vector<std::vector<models::Tensor>> per_row;  // each row's outputs (1 row each)
  std::vector<std::string> keys;                     // per row; empty = not cached
  int pending_calls = 0;
  std::optional<Status> failure;
  int cached = 0;
  cache::Tier worst = cache::Tier::kL1;
  cache::Cache* cache = nullptr;
};

void finish(const std::shared_ptr<Flight>& f) {
  if (f->failure) return f->done(*f->failure);
  const auto& wanted = f->request.outputs;
  RowsResult result;
  result.cached = f->cached;
  result.cache_tier = cache::x_cache_header(f->cached == f->request.rows ? f->worst : cache::Tier::kMiss);
  const std::vector<models::Tensor>& first = f->per_row[0];
  for (size_t o = 0; o < first.size(); ++o) {
    if (!wanted.empty() && std::find(wanted.begin(), wanted.end(), first[o].name) == wanted.end()) continue;
    models::Tensor t{first[o].name, {f->request.rows, first[o].shape[1]}, {}};
    t.data.reserve(static_cast<size_t>(f->request.rows * first[o].shape[1]));
    for (const auto& row : f->per_row) {
      if (row.size() != first.size() || row[o].name != first[o].name || row[o].shape[1] != first[o].shape[1]) {
        return f->done(Status::Internal("rows of one request came back with different outputs"));
      }
      t.data.insert(t.data.end(), row[o].data.begin(), row[o].data.end());
    }
    result.outputs.push_back(std::move(t));
  }
  f->request.lease.reset();
  f->done(std::move(result));
}

}  // namespace

bool cache_bypassed(const http::Request& req) {
  std::string value(req.header("Cache-Control"));
  for (char& c : value) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return value.find("no-cache") != std::string::npos || value.find("no-store") != std::string::npos;
}

PredictionService::PredictionService(models::Registry& models, cache::Cache* cache,
                                     double request_timeout_s)
    : models_(models), cache_(cache), request_timeout_s_(request_timeout_s) {}

void PredictionService::acquire(const std::string& name, const auth::Caller* caller, LeaseDone done) {
  if (caller != nullptr && !caller->may_use_model(name)) {
    return done(Status::PermissionDenied(
        fmt::format("key '{}' (role {}) may not use model '{}'", caller->name, caller->role, name)));
  }
  models_.acquire(name, std::nullopt, [name, done = std::move(done)](
                                          Result<std::shared_ptr<models::Lease>> lease) {
    if (!lease.ok()) return done(lease.status());
    if ((*lease)->model().predictor() == nullptr) {
      return done(Status::InvalidArgument(fmt::format(
          "model '{}' (kind {}) does not take features or tensors; predictions need a model of "
          "kind xgboost",
          name, (*lease)->spec().kind)));
    }
    done(std::move(lease).value());
  });
}

std::optional<PredictionService::Clock::time_point> PredictionService::deadline(
    std::optional<double> timeout_s) const {
  double limit = request_timeout_s_;
  if (timeout_s && *timeout_s > 0 && (limit <= 0 || *timeout_s < limit)) limit = *timeout_s;
  if (limit <= 0) return std::nullopt;
  return Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(limit));
}

int PredictionService::priority(const auth::Caller* caller, std::optional<int> requested) {
  int level = 1;
  if (caller != nullptr) level = caller->priority > 0 ? 0 : caller->priority < 0 ? 2 : 1;
  if (requested) level = std::max(level, std::clamp(*requested, 0, 2));
  return level;
}

void PredictionService::run(Rows request, RowsDone done) {
  models::Predictor& predictor = *request.lease->model().predictor();
  const models::TensorSpec& input = predictor.inputs().at(0);
  const int64_t width = input.row_width();
  if (request.rows < 1 || static_cast<int64_t>(request.data.size()) != request.rows * width) {
    return done(Status::InvalidArgument(fmt::format("input '{}' needs rows x {} values", input.name, width)));
  }
  const bool explain =
      request.outputs.empty() ||
      std::find(request.outputs.begin(), request.outputs.end(), kImportance) != request.outputs.end();
  for (const std::string& name : request.outputs) {
    const auto& outs = predictor.outputs();
    if (std::none_of(outs.begin(), outs.end(), [&](const models::TensorSpec& t) { return t.name == name; })) {
      std::string list;
      for (const auto& t : outs) list += (list.empty() ? "" : ", ") + t.name;
      return done(Status::InvalidArgument(
          fmt::format("output '{}' is not one of the model's outputs ({})", name, list)));
    }
  }
  // What the model is asked for: everything, or everything but feature importance, so a
  // cached row serves any later request of the same mode.
  std::vector<std::string> computed;
  if (!explain) {
    for (const auto& t : predictor.outputs()) {
      if (t.name != kImportance) computed.push_back(t.name);
    }
  }
  auto f = std::make_shared<Flight>();
  f->done = std::move(done);
  f->per_row.resize(static_cast<size_t>(request.rows));
  f->keys.resize(static_cast<size_t>(request.rows));
  f->cache = request.use_cache ? cache_ : nullptr;
  std::vector<int> misses;
  for (int r = 0; r < request.rows; ++r) {
    if (f->cache != nullptr) {
      const char* row = reinterpret_cast<const char*>(request.data.data() + r * width);
      std::string key = cache::KeyBuilder(request.lease->spec().name, request.lease->identity(), "predict")
                            .param("row", std::string_view(row, static_cast<size_t>(width) * 4))
                            .param("importance", explain ? 1 : 0)
                            .key();
      cache::Lookup hit = f->cache->get(key);
      auto& slot = f->per_row[static_cast<size_t>(r)];
      if (hit.value && decode_row(*hit.value, slot, true)) {
        for (auto& t : slot) t.shape[0] = 1;
        ++f->cached;
        f->worst = cache::slower_tier(f->worst, hit.tier);
        continue;
      }
      slot.clear();
      f->keys[static_cast<size_t>(r)] = std::move(key);
    }
    misses.push_back(r);
  }
  f->request = std::move(request);
  if (misses.empty()) return finish(f);
  const int max_rows = std::max(1, predictor.max_batch_rows());
  std::vector<std::vector<int>> calls;
  for (size_t i = 0; i < misses.size(); i += static_cast<size_t>(max_rows)) {
    calls.emplace_back(misses.begin() + static_cast<std::ptrdiff_t>(i),
                       misses.begin() + static_cast<std::ptrdiff_t>(std::min(misses.size(), i + max_rows)));
  }
  f->pending_calls = static_cast<int>(calls.size());
  for (auto& rows : calls) {
    models::Predictor::Request call;
    models::Tensor in{input.name, input.shape, {}};
    in.shape[0] = static_cast<int64_t>(rows.size());
    in.data.reserve(rows.size() * static_cast<size_t>(width));
    for (int r : rows) {
      const float* src = f->request.data.data() + r * width;
      in.data.insert(in.data.end(), src, src + width);
    }
    call.inputs.push_back(std::move(in));
    call.outputs = computed;
    call.priority = f->request.priority;
    call.deadline = f->request.deadline;
    predictor.predict(std::move(call), [f, rows = std::move(rows)](Result<std::vector<models::Tensor>> out) {
      bool last = false;
      {
        std::lock_guard lock(f->mu);
        if (!out.ok()) {
          if (!f->failure) f->failure = out.status();
        } else {
          for (size_t j = 0; j < rows.size(); ++j) {
            auto& slot = f->per_row[static_cast<size_t>(rows[j])];
            for (const models::Tensor& t : *out) {
              const int64_t w = t.shape.size() > 1 ? t.shape[1] : 1;
              slot.push_back({t.name, {1, w},
                              std::vector<float>(t.data.begin() + static_cast<std::ptrdiff_t>(j * w),
                                                 t.data.begin() + static_cast<std::ptrdiff_t>((j + 1) * w))});
            }
            if (f->cache != nullptr) {
              f->cache->put(f->keys[static_cast<size_t>(rows[j])], encode_row(slot, 0));
            }
          }
        }
        last = --f->pending_calls == 0;
      }
      if (last) finish(f);
    });
  }
}

}  // namespace infera::api
