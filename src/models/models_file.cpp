#include "models/models_file.h"

#include <fmt/format.h>
#include <toml++/toml.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <set>

namespace infera::models {
namespace {

const std::set<std::string> kKnownKeys = {"name",         "path",       "kind",     "pin",
                                          "keep_alive",   "ctx_size",   "max_seqs", "chat_template",
                                          "role_prompts", "dimensions", "pooling",
                                          "schema",       "max_batch_size", "preferred_batch_size",
                                          "max_queue_delay_us", "max_queue_size"};

}  // namespace

Result<std::chrono::milliseconds> parse_keep_alive(const std::string& text) {
  std::string t = text;
  while (!t.empty() && std::isspace(static_cast<unsigned char>(t.back()))) t.pop_back();
  if (t.empty()) return Status::InvalidArgument("keep_alive: empty duration");
  char* end = nullptr;
  double value = std::strtod(t.c_str(), &end);
  if (end == t.c_str() || !std::isfinite(value)) {
    return Status::InvalidArgument(
        fmt::format("keep_alive: '{}' is not a duration (e.g. 30s, 5m, 1h, -1)", text));
  }
  // Everything after the number, embedded NULs included ("5m\0x" is not "5m").
  std::string unit(end, static_cast<size_t>(t.data() + t.size() - end));
  double ms_per_unit = 0;
  if (unit.empty() || unit == "s")
    ms_per_unit = 1000;
  else if (unit == "ms")
    ms_per_unit = 1;
  else if (unit == "m")
    ms_per_unit = 60000;
  else if (unit == "h")
    ms_per_unit = 3600000;
  else
    return Status::InvalidArgument(
        fmt::format("keep_alive: unknown unit '{}' in '{}' (ms, s, m, h)", unit, text));
  if (value < 0) return std::chrono::milliseconds(-1);
  constexpr double kMaxMs = 366.0 * 24 * 3600 * 1000;  // a year; -1 is forever
  if (value * ms_per_unit > kMaxMs) {
    return Status::InvalidArgument(fmt::format(
        "keep_alive: '{}' is longer than a year; use -1 to keep the model loaded", text));
  }
  return std::chrono::milliseconds(static_cast<int64_t>(std::llround(value * ms_per_unit)));
}

Result<ModelSpec> parse_model_flag(const std::string& text) {
  ModelSpec spec;
  spec.declared_by = "--model";
  auto eq = text.find('=');
  if (eq == std::string::npos) {
    spec.path = text;
    spec.name = std::filesystem::path(text).stem().string();
  } else {
    spec.name = text.substr(0, eq);
    spec.path = text.substr(eq + 1);
  }
  if (spec.name.empty() || spec.path.empty()) {
    return Status::InvalidArgument(fmt::format("--model '{}': expected name=path or a path", text));
  }
  return spec;
}

Result<std::vector<ModelSpec>> parse_models_file(const std::string& path) {
  toml::table doc;
  try {
    doc = toml::parse_file(path);
  } catch (const toml::parse_error& err) {
    return Status::InvalidArgument(fmt::format("{}:{}:{}: invalid TOML: {}", path,
                                               err.source().begin.line, err.source().begin.column,
                                               err.description()));
  }
  const auto base = std::filesystem::path(path).parent_path();
  const toml::array* list = doc["models"].as_array();
  if (list == nullptr) {
    return Status::InvalidArgument(fmt::format("{}: no [[models]] entries", path));
  }
  for (const auto& [key, _] : doc) {
    if (key.str() != "models") {
      return Status::InvalidArgument(
          fmt::format("{}: unknown top-level key '{}' (only [[models]])", path, key.str()));
    }
  }
  std::vector<ModelSpec> out;
  int index = 0;
  for (const auto& node : *list) {
    ++index;
    const toml::table* t = node.as_table();
    std::string where = fmt::format("{}: models entry {}", path, index);
    if (t == nullptr) return Status::InvalidArgument(where + ": must be a table");
    for (const auto& [key, _] : *t) {
      if (!kKnownKeys.count(std::string(key.str()))) {
        return Status::InvalidArgument(fmt::format("{}: unknown key '{}'", where, key.str()));
      }
    }
    ModelSpec spec;
    spec.declared_by = "models-file " + path;
    auto name = (*t)["name"].value<std::string>();
    if (!name || name->empty())
      return Status::InvalidArgument(where + ": 'name' (a string) is required");
    spec.name = *name;
    where = fmt::format("{}: model '{}'", path, spec.name);
    auto file = (*t)["path"].value<std::string>();
    if (!file || file->empty())
      return Status::InvalidArgument(where + ": 'path' (a string) is required");
    std::filesystem::path p(*file);
    spec.path = (p.is_relative() ? base / p : p).lexically_normal().string();
    auto string_key = [&](const char* key, std::string& out) -> Status {
      if (!t->contains(key)) return Status::Ok();
      auto v = (*t)[key].value<std::string>();
      if (!v) return Status::InvalidArgument(fmt::format("{}: '{}' must be a string", where, key));
      out = *v;
      return Status::Ok();
    };
    auto int_key = [&](const char* key, int& out, int64_t max) -> Status {
      if (!t->contains(key)) return Status::Ok();
      auto v = (*t)[key].value<int64_t>();
      if (!v || *v < 1 || *v > max || !(*t)[key].is_integer()) {
        return Status::InvalidArgument(
            fmt::format("{}: '{}' must be an integer from 1 to {}", where, key, max));
      }
      out = static_cast<int>(*v);
      return Status::Ok();
    };
    for (Status st :
         {string_key("kind", spec.kind), string_key("chat_template", spec.chat_template),
          string_key("pooling", spec.pooling), int_key("ctx_size", spec.ctx_size, 1 << 20),
          int_key("max_seqs", spec.max_seqs, 4096),
          int_key("max_batch_size", spec.max_batch_size, 1 << 16),
          int_key("max_queue_size", spec.max_queue_size, 1 << 20)}) {
      if (!st.ok()) return st;
    }
    if (t->contains("pooling") && spec.pooling != "mean" && spec.pooling != "last" &&
        spec.pooling != "cls") {
      return Status::InvalidArgument(fmt::format(
          "{}: 'pooling' must be \"mean\", \"last\" or \"cls\", not \"{}\"", where, spec.pooling));
    }
    if (t->contains("pin")) {
      auto v = (*t)["pin"].value<bool>();
      if (!v || !(*t)["pin"].is_boolean())
        return Status::InvalidArgument(where + ": 'pin' must be true or false");
      spec.pin = *v;
    }
    if (t->contains("keep_alive")) {
      const auto& ka = (*t)["keep_alive"];
      std::string text;
      if (ka.is_string())
        text = *ka.value<std::string>();
      else if (ka.is_integer())
        text = std::to_string(*ka.value<int64_t>());
      else if (ka.is_floating_point())
        text = fmt::format("{}", *ka.value<double>());
      else
        return Status::InvalidArgument(
            where + ": 'keep_alive' must be a duration such as \"5m\" or seconds");
      auto parsed = parse_keep_alive(text);
      if (!parsed.ok()) return Status::InvalidArgument(where + ": " + parsed.status().message());
      spec.keep_alive = *parsed;
    }
    if (t->contains("role_prompts")) {
      const toml::table* roles = (*t)["role_prompts"].as_table();
      if (roles == nullptr)
        return Status::InvalidArgument(where + ": 'role_prompts' must be a table of strings");
      for (const auto& [role, prompt] : *roles) {
        auto v = prompt.value<std::string>();
        if (!v)
          return Status::InvalidArgument(
              fmt::format("{}: role_prompts.{} must be a string", where, role.str()));
        spec.role_prompts[std::string(role.str())] = *v;
      }
    }
    if (t->contains("schema")) {
      auto v = (*t)["schema"].value<std::string>();
      if (!v || v->empty()) return Status::InvalidArgument(where + ": 'schema' must be a path");
      std::filesystem::path sp(*v);
      spec.schema = (sp.is_relative() ? base / sp : sp).lexically_normal().string();
    }
    if (t->contains("max_queue_delay_us")) {
      auto v = (*t)["max_queue_delay_us"].value<int64_t>();
      if (!v || !(*t)["max_queue_delay_us"].is_integer() || *v < 0 || *v > 60'000'000) {
        return Status::InvalidArgument(
            where + ": 'max_queue_delay_us' must be an integer from 0 to 60000000");
      }
      spec.max_queue_delay_us = *v;
    }
    if (t->contains("preferred_batch_size")) {
      const toml::node& node = *(*t)["preferred_batch_size"].node();
      auto add = [&](const toml::node& n) {
        auto v = n.value<int64_t>();
        if (!v || !n.is_integer() || *v < 1 || *v > (1 << 16)) return false;
        spec.preferred_batch_size.push_back(static_cast<int>(*v));
        return true;
      };
      bool ok = true;
      if (const toml::array* a = node.as_array()) {
        for (const auto& n : *a) ok = ok && add(n);
      } else {
        ok = add(node);
      }
      if (!ok) {
        return Status::InvalidArgument(
            where + ": 'preferred_batch_size' must be an integer or an array of integers (rows)");
      }
      std::sort(spec.preferred_batch_size.begin(), spec.preferred_batch_size.end());
    }
    if (t->contains("dimensions")) {
      const toml::array* dims = (*t)["dimensions"].as_array();
      if (dims == nullptr)
        return Status::InvalidArgument(where + ": 'dimensions' must be an array of integers");
      for (const auto& d : *dims) {
        auto v = d.value<int64_t>();
        if (!v || !d.is_integer() || *v < 1 || *v > 65536) {
          return Status::InvalidArgument(
              where + ": 'dimensions' entries must be integers from 1 to 65536");
        }
        spec.dimensions.push_back(static_cast<int>(*v));
      }
    }
    out.push_back(std::move(spec));
  }
  return out;
}

}  // namespace infera::models
