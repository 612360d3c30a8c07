#include "core/config.h"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <fmt/format.h>
#include <toml++/toml.h>

namespace infera::core {
namespace {

const OptionSpec* find_spec(const std::string& key) {
  for (const auto& spec : option_specs()) {
    if (spec.key == key) return &spec;
  }
  return nullptr;
}

std::string describe_source(const OptionSpec& spec, ConfigSource source) {
  switch (source) {
    case ConfigSource::kFlag: return "flag --" + spec.flag;
    case ConfigSource::kEnv: return "environment " + spec.env;
    case ConfigSource::kFile: return "config file key " + spec.key;
    case ConfigSource::kDefault: return "default";
  }
  return "?";
}

std::string fmt_number(double v) {
  if (v == std::floor(v) && std::fabs(v) < 1e15) return fmt::format("{}", static_cast<int64_t>(v));
  return fmt::format("{}", v);
}

std::string allowed(const OptionSpec& spec) {
  switch (spec.type) {
    case OptionType::kInt:
      return fmt::format("an integer from {} to {}", fmt_number(spec.min), fmt_number(spec.max));
    case OptionType::kSize:
      return fmt::format("a size in bytes from {} to {} (suffixes KiB, MiB, GiB allowed)",
                         fmt_number(spec.min), fmt_number(spec.max));
    case OptionType::kFloat:
      return fmt::format("a number from {} to {}", fmt_number(spec.min), fmt_number(spec.max));
    case OptionType::kBool: return "true or false";
    case OptionType::kChoice: {
      std::string out = "one of";
      for (size_t i = 0; i < spec.choices.size(); ++i) out += (i ? ", " : " ") + spec.choices[i];
      return out;
    }
    case OptionType::kString: return "any text";
  }
  return "";
}

std::optional<double> parse_integer(const std::string& text) {
  if (text.empty()) return std::nullopt;
  size_t i = (text[0] == '-' || text[0] == '+') ? 1 : 0;
  if (i == text.size()) return std::nullopt;
  for (size_t j = i; j < text.size(); ++j) {
    if (!std::isdigit(static_cast<unsigned char>(text[j]))) return std::nullopt;
  }
  if (text.size() > 18) return std::nullopt;
  return static_cast<double>(std::stoll(text));
}

std::optional<double> parse_float(const std::string& text) {
  if (text.empty()) return std::nullopt;
  char* end = nullptr;
  double v = std::strtod(text.c_str(), &end);
  if (end != text.c_str() + text.size() || !std::isfinite(v)) return std::nullopt;
  return v;
}

std::optional<bool> parse_bool(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(), [](unsigned char c) { return std::tolower(c); });
  if (text == "true" || text == "1" || text == "yes" || text == "on") return true;
  if (text == "false" || text == "0" || text == "no" || text == "off") return false;
  return std::nullopt;
}

// Converts a TOML node to the text form the validator parses.
std::optional<std::string> toml_to_text(const toml::node& node) {
  if (auto v = node.value<int64_t>(); v && node.is_integer()) return std::to_string(*v);
  if (node.is_floating_point()) return fmt::format("{}", *node.value<double>());
  if (node.is_boolean()) return *node.value<bool>() ? "true" : "false";
  if (node.is_string()) return *node.value<std::string>();
  return std::nullopt;
}

}  // namespace

const char* to_string(ConfigSource source) {
  switch (source) {
    case ConfigSource::kDefault: return "default";
    case ConfigSource::kFile: return "file";
    case ConfigSource::kEnv: return "env";
    case ConfigSource::kFlag: return "flag";
  }
  return "?";
}

std::optional<int64_t> parse_size_bytes(const std::string& text) {
  size_t i = 0;
  while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) ++i;
  if (i == 0 || i > 15) return std::nullopt;
  int64_t base = std::stoll(text.substr(0, i));
  std::string suffix = text.substr(i);
  std::transform(suffix.begin(), suffix.end(), suffix.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  int64_t mult = 0;
  if (suffix.empty() || suffix == "b") mult = 1;
  else if (suffix == "k" || suffix == "kb" || suffix == "kib") mult = int64_t{1} << 10;
  else if (suffix == "m" || suffix == "mb" || suffix == "mib") mult = int64_t{1} << 20;
  else if (suffix == "g" || suffix == "gb" || suffix == "gib") mult = int64_t{1} << 30;
  else return std::nullopt;
  return base * mult;
}

EnvLookup process_env() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* v = std::getenv(name.c_str());
    if (v == nullptr) return std::nullopt;
    return std::string(v);
  };
}

void add_config_flags(CLI::App& app, FlagValues& flags) {
  flags["config"];
  app.add_option_function<std::string>(
      "--config", [&flags](const std::string& v) { flags["config"] = v; },
      "TOML configuration file (flags > environment > file > defaults)");
  for (const auto& spec : option_specs()) {
    flags[spec.flag];
    std::string help = spec.help + " [env " + spec.env + ", default " +
                       (spec.default_value.empty() ? "\"\"" : spec.default_value) + "]";
    std::string names = "--" + spec.flag;
    if (!spec.alias.empty()) names += ",--" + spec.alias;
    if (spec.repeatable) {
      app.add_option_function<std::vector<std::string>>(
             names,
             [&flags, flag = spec.flag](const std::vector<std::string>& values) {
               std::string joined;
               for (const auto& v : values) joined += (joined.empty() ? "" : ",") + v;
               flags[flag] = joined;
             },
             help + " (repeatable)")
          ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll)
          ->expected(1);
      continue;
    }
    auto* opt = app.add_option_function<std::string>(
        names, [&flags, flag = spec.flag](const std::string& v) { flags[flag] = v; }, help);
    if (spec.type == OptionType::kBool) {
      // A bare boolean flag (--allow-anonymous) means true; --mmap false still works.
      opt->expected(0, 1)->default_str("true");
    }
  }
}

Result<Config> Config::load(const FlagValues& flags, const EnvLookup& env) {
  Config config;
  std::map<std::string, std::pair<std::string, ConfigSource>> raw;
  for (const auto& spec : option_specs()) {
    raw[spec.key] = std::make_pair(spec.default_value, ConfigSource::kDefault);
  }

  auto config_path = flags.find("config");
  if (config_path != flags.end() && config_path->second) {
    const std::string& path = *config_path->second;
    toml::table parsed;
    try {
      // Debian's toml++ is built with exceptions; they stop here.
      parsed = toml::parse_file(path);
    } catch (const toml::parse_error& err) {
      return Status::InvalidArgument(fmt::format("{}:{}:{}: invalid TOML: {}", path,
                                                 err.source().begin.line,
                                                 err.source().begin.column, err.description()));
    }
    for (const auto& [k, node] : parsed) {
      std::string key(k.str());
      const OptionSpec* spec = find_spec(key);
      if (spec == nullptr) {
        return Status::InvalidArgument(fmt::format(
            "{}: unknown key '{}' (run `infera config --help` for the list)", path, key));
      }
      auto text = toml_to_text(node);
      if (!text) {
        return Status::InvalidArgument(
            fmt::format("{}: key '{}' must be a string, number or boolean; expected {}", path, key,
                        allowed(*spec)));
      }
      raw[key] = std::make_pair(*text, ConfigSource::kFile);
    }
  }
  for (const auto& spec : option_specs()) {
    if (auto v = env(spec.env)) raw[spec.key] = std::make_pair(*v, ConfigSource::kEnv);
    auto f = flags.find(spec.flag);
    if (f != flags.end() && f->second) raw[spec.key] = std::make_pair(*f->second, ConfigSource::kFlag);
  }

  for (const auto& spec : option_specs()) {
    const auto& [text, source] = raw[spec.key];
    Value value{text, 0, false, source};
    bool valid = true;
    switch (spec.type) {
      case OptionType::kInt:
      case OptionType::kFloat:
      case OptionType::kSize: {
        std::optional<double> n;
        if (spec.type == OptionType::kInt) n = parse_integer(text);
        if (spec.type == OptionType::kFloat) n = parse_float(text);
        if (spec.type == OptionType::kSize) {
          if (auto b = parse_size_bytes(text)) n = static_cast<double>(*b);
        }
        valid = n && *n >= spec.min && *n <= spec.max;
        if (valid) value.number = *n;
        break;
      }
      case OptionType::kBool: {
        auto b = parse_bool(text);
        valid = b.has_value();
        if (valid) value.flag = *b;
        break;
      }
      case OptionType::kChoice:
        valid = std::find(spec.choices.begin(), spec.choices.end(), text) != spec.choices.end();
        break;
      case OptionType::kString: break;
    }
    if (!valid) {
      return Status::InvalidArgument(fmt::format("invalid value for {} (from {}): '{}'; expected {}",
                                                 spec.env, describe_source(spec, source), text,
                                                 allowed(spec)));
    }
    config.values_[spec.key] = std::move(value);
  }
  return config;
}

const Config::Value& Config::at(const std::string& key) const {
  auto it = values_.find(key);
  if (it == values_.end()) throw std::logic_error("unknown config key: " + key);
  return it->second;
}

int64_t Config::get_int(const std::string& key) const { return static_cast<int64_t>(at(key).number); }
double Config::get_double(const std::string& key) const { return at(key).number; }
bool Config::get_bool(const std::string& key) const { return at(key).flag; }
const std::string& Config::get_string(const std::string& key) const { return at(key).text; }
ConfigSource Config::source(const std::string& key) const { return at(key).source; }

std::string Config::describe() const {
  std::string out = fmt::format("{:<28} {:<20} {:<8} {}\n", "key", "value", "source", "name");
  for (const auto& spec : option_specs()) {
    const Value& v = at(spec.key);
    std::string shown = v.text.empty() ? "\"\"" : v.text;
    out += fmt::format("{:<28} {:<20} {:<8} {}\n", spec.key, shown, to_string(v.source),
                       describe_source(spec, v.source));
  }
  return out;
}

}  // namespace infera::core
