// Effective configuration of infera, with one precedence everywhere:
//   command-line flags > environment variables > TOML file (--config) > defaults.
//
// Every option is declared once in options.cpp (key, env name, flag, type, default,
// range, unit) and shows up as a flag, an environment variable and a TOML key.
// Invalid values fail at start with a message naming the key, the value, where it
// came from and what is allowed. Subsystems never read the environment: main/cli
// builds a Config and copies typed values into each subsystem's own Config struct.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/status.h"

namespace CLI {
class App;
}

namespace infera::core {

enum class ConfigSource { kDefault, kFile, kEnv, kFlag };
const char* to_string(ConfigSource source);

enum class OptionType { kInt, kSize, kFloat, kBool, kString, kChoice };

struct OptionSpec {
  std::string key;       // snake_case; also the TOML key
  std::string env;       // environment variable, e.g. MAX_WORKERS
  std::string flag;      // long flag without dashes, e.g. max-workers
  OptionType type = OptionType::kString;
  std::string default_value;
  double min = 0;        // inclusive bounds for kInt / kSize / kFloat
  double max = 0;
  std::vector<std::string> choices;  // for kChoice
  std::string help;      // one line, with the unit
  std::string alias;     // a second flag name, e.g. max-seqs for batch-size
  // The flag may be given several times; the values are joined with ',' (the
  // environment and TOML give the comma-separated list directly).
  bool repeatable = false;
};

// All options infera knows, in display order.
const std::vector<OptionSpec>& option_specs();

// Raw flag values as given on the command line (flag name → text).
using FlagValues = std::map<std::string, std::optional<std::string>>;
// Environment lookup; the default reads the process environment.
using EnvLookup = std::function<std::optional<std::string>(const std::string&)>;
EnvLookup process_env();

// Registers --config and every option of option_specs() as a flag on `app`,
// storing the raw text in `flags` (validated later by Config::load).
void add_config_flags(CLI::App& app, FlagValues& flags);

class Config {
 public:
  // Builds the effective configuration. `flags` may hold "config" (TOML path).
  // Returns InvalidArgument naming key, value, source and what is allowed.
  static Result<Config> load(const FlagValues& flags, const EnvLookup& env);

  int64_t get_int(const std::string& key) const;     // kInt and kSize (bytes)
  double get_double(const std::string& key) const;   // kFloat (and ints)
  bool get_bool(const std::string& key) const;
  const std::string& get_string(const std::string& key) const;  // any type, as text
  ConfigSource source(const std::string& key) const;

  // Human-readable table of every key, its value and where it came from.
  std::string describe() const;

 private:
  struct Value {
    std::string text;
    double number = 0;
    bool flag = false;
    ConfigSource source = ConfigSource::kDefault;
  };
  const Value& at(const std::string& key) const;
  std::map<std::string, Value> values_;
};

// Parses "1048576", "64KiB", "1MB", "2g" (binary multiples) into bytes.
std::optional<int64_t> parse_size_bytes(const std::string& text);

}  // namespace infera::core
