// The keys file (auth.h: parse_keys_file), SHA-256 and model permissions.
#include <fmt/format.h>
#include <openssl/evp.h>
#include <toml++/toml.h>

#include <set>

#include "auth/auth.h"

namespace infera::auth {
namespace {

const std::set<std::string> kLimitKeys = {"requests_per_minute", "request_burst", "tokens_per_minute",
                                          "concurrent", "tokens_per_day"};

Role builtin(const std::string& name, int priority, bool admin) {
  Role r;
  r.name = name;
  r.priority = priority;
  r.admin = admin;
  return r;
}

// Reads an integer >= 0 at `key` of `t` into `out`; absent leaves `out`.
Status read_count(const toml::table& t, const std::string& key, int64_t& out, const std::string& where) {
  const toml::node* n = t.get(key);
  if (n == nullptr) return Status::Ok();
  auto v = n->value<int64_t>();
  if (!v || *v < 0) {
    return Status::InvalidArgument(fmt::format("{}: {} must be a whole number >= 0", where, key));
  }
  out = *v;
  return Status::Ok();
}

Status read_limits(const toml::table& t, Limits& l, const std::string& where) {
  for (auto [key, ptr] : std::initializer_list<std::pair<const char*, int64_t*>>{
           {"requests_per_minute", &l.requests_per_minute},
           {"request_burst", &l.request_burst},
           {"tokens_per_minute", &l.tokens_per_minute},
           {"concurrent", &l.concurrent},
           {"tokens_per_day", &l.tokens_per_day}}) {
    if (Status st = read_count(t, key, *ptr, where); !st.ok()) return st;
  }
  return Status::Ok();
}

Status read_strings(const toml::table& t, const std::string& key, std::vector<std::string>& out,
                    const std::string& where) {
  const toml::node* n = t.get(key);
  if (n == nullptr) return Status::Ok();
  const toml::array* a = n->as_array();
  if (a == nullptr) return Status::InvalidArgument(fmt::format("{}: {} must be an array of strings", where, key));
  out.clear();
  for (const auto& e : *a) {
    auto s = e.value<std::string>();
    if (!s || s->empty()) {
      return Status::InvalidArgument(fmt::format("{}: {} must be an array of non-empty strings", where, key));
    }
    out.push_back(*s);
  }
  return Status::Ok();
}

Status check_known(const toml::table& t, const std::set<std::string>& known, const std::string& where) {
  for (const auto& [k, v] : t) {
    std::string key(k.str());
    if (!known.count(key) && !kLimitKeys.count(key)) {
      return Status::InvalidArgument(fmt::format("{}: unknown key '{}'", where, key));
    }
  }
  return Status::Ok();
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::array<uint8_t, 32> sha256(std::string_view text) {
  // The algorithm is fetched once and each thread keeps its context: EVP_Digest would
  // look SHA-256 up and allocate a context on every call (a third of a request's gate).
  static EVP_MD* const md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  struct Ctx {
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    ~Ctx() { EVP_MD_CTX_free(ctx); }
  };
  thread_local Ctx c;
  std::array<uint8_t, 32> digest{};
  unsigned int len = 0;
  if (md == nullptr || c.ctx == nullptr || EVP_DigestInit_ex2(c.ctx, md, nullptr) != 1 ||
      EVP_DigestUpdate(c.ctx, text.data(), text.size()) != 1 || EVP_DigestFinal_ex(c.ctx, digest.data(), &len) != 1) {
    EVP_Digest(text.data(), text.size(), digest.data(), &len, EVP_sha256(), nullptr);
  }
  return digest;
}

std::string sha256_hex(std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(64);
  for (uint8_t b : sha256(text)) {
    out += kHex[b >> 4];
    out += kHex[b & 15];
  }
  return out;
}

bool Caller::may_use_model(std::string_view model) const {
  if (models.empty()) return true;
  for (const auto& m : models) {
    if (m == "*" || m == model) return true;
    if (m.size() > 1 && m.back() == '*' && model.substr(0, m.size() - 1) == std::string_view(m).substr(0, m.size() - 1)) {
      return true;
    }
  }
  return false;
}

Result<KeysFile> parse_keys_file(const std::string& path) {
  toml::table doc;
  try {
    doc = toml::parse_file(path);
  } catch (const toml::parse_error& err) {
    return Status::InvalidArgument(fmt::format("{}:{}:{}: invalid TOML: {}", path, err.source().begin.line,
                                               err.source().begin.column, err.description()));
  }
  for (const auto& [k, v] : doc) {
    if (k.str() != "roles" && k.str() != "keys") {
      return Status::InvalidArgument(
          fmt::format("{}: unknown top-level key '{}' (expected [roles.NAME] tables and [[keys]])", path, k.str()));
    }
  }
  KeysFile out;
  out.roles = {builtin("admin", 50, true), builtin("teacher", 10, false), builtin("student", 0, false)};
  if (const toml::node* roles_node = doc.get("roles")) {
    const toml::table* roles = roles_node->as_table();
    if (roles == nullptr) return Status::InvalidArgument(fmt::format("{}: roles must be a table of [roles.NAME]", path));
    for (const auto& [k, v] : *roles) {
      const std::string name(k.str());
      const std::string where = fmt::format("{}: [roles.{}]", path, name);
      const toml::table* t = v.as_table();
      if (t == nullptr) return Status::InvalidArgument(where + ": must be a table");
      if (Status st = check_known(*t, {"priority", "admin", "models", "routes"}, where); !st.ok()) return st;
      Role* role = nullptr;
      for (auto& r : out.roles) {
        if (r.name == name) role = &r;
      }
      if (role == nullptr) {
        out.roles.push_back(builtin(name, 0, false));
        role = &out.roles.back();
      }
      if (const toml::node* p = t->get("priority")) {
        auto v2 = p->value<int64_t>();
        if (!v2 || *v2 < -100 || *v2 > 100) {
          return Status::InvalidArgument(where + ": priority must be a whole number from -100 to 100");
        }
        role->priority = static_cast<int>(*v2);
      }
      if (const toml::node* a = t->get("admin")) {
        auto b = a->value<bool>();
        if (!b) return Status::InvalidArgument(where + ": admin must be true or false");
        role->admin = *b;
      }
      if (Status st = read_strings(*t, "models", role->models, where); !st.ok()) return st;
      if (Status st = read_strings(*t, "routes", role->routes, where); !st.ok()) return st;
      for (const auto& r : role->routes) {
        if (r.front() != '/') return Status::InvalidArgument(fmt::format("{}: route '{}' must start with /", where, r));
      }
      if (Status st = read_limits(*t, role->limits, where); !st.ok()) return st;
    }
  }
  if (const toml::node* keys_node = doc.get("keys")) {
    const toml::array* keys = keys_node->as_array();
    if (keys == nullptr) return Status::InvalidArgument(fmt::format("{}: keys must be an array of [[keys]]", path));
    std::set<std::string> names, digests;
    size_t index = 0;
    for (const auto& e : *keys) {
      ++index;
      const toml::table* t = e.as_table();
      std::string where = fmt::format("{}: [[keys]] #{}", path, index);
      if (t == nullptr) return Status::InvalidArgument(where + ": must be a table");
      KeyEntry key;
      key.name = t->get("name") ? t->get("name")->value_or(std::string()) : std::string();
      if (key.name.empty()) return Status::InvalidArgument(where + ": name is missing");
      where = fmt::format("{}: key '{}'", path, key.name);
      if (Status st = check_known(*t, {"name", "sha256", "role", "models"}, where); !st.ok()) return st;
      if (!names.insert(key.name).second) return Status::InvalidArgument(where + ": a key of this name is listed twice");
      const std::string hex = t->get("sha256") ? t->get("sha256")->value_or(std::string()) : std::string();
      bool hex_ok = hex.size() == 64;
      for (size_t i = 0; hex_ok && i < 32; ++i) {
        const int hi = hex_value(hex[2 * i]), lo = hex_value(hex[2 * i + 1]);
        hex_ok = hi >= 0 && lo >= 0;
        if (hex_ok) key.sha256[i] = static_cast<uint8_t>(hi * 16 + lo);
      }
      if (!hex_ok) {
        return Status::InvalidArgument(where +
                                       ": sha256 must be the 64 hex digits of the key's SHA-256 "
                                       "(printf %s \"$KEY\" | sha256sum)");
      }
      std::string lower;
      for (char c : hex) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (!digests.insert(lower).second) {
        return Status::InvalidArgument(where + ": the same key (sha256) is listed twice");
      }
      key.role = t->get("role") ? t->get("role")->value_or(std::string()) : std::string();
      if (key.role.empty()) return Status::InvalidArgument(where + ": role is missing");
      bool known_role = false;
      std::string role_names;
      for (const auto& r : out.roles) {
        known_role = known_role || r.name == key.role;
        role_names += (role_names.empty() ? "" : ", ") + r.name;
      }
      if (!known_role) {
        return Status::InvalidArgument(
            fmt::format("{}: unknown role '{}' (roles: {}; add [roles.{}] to define it)", where, key.role,
                        role_names, key.role));
      }
      if (Status st = read_strings(*t, "models", key.models, where); !st.ok()) return st;
      if (Status st = read_limits(*t, key.limits, where); !st.ok()) return st;
      out.keys.push_back(std::move(key));
    }
  }
  return out;
}

}  // namespace infera::auth
