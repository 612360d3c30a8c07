#include "predict/image_index.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/unique_fd.h"

namespace infera::predict {
namespace {

using nlohmann::json;

bool name_chars(const std::string& s, size_t max, bool colon) {
  if (s.empty() || s.size() > max) return false;
  return std::all_of(s.begin(), s.end(), [colon](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' ||
           (colon && (c == '.' || c == ':'));
  });
}

Status write_all(int fd, const std::string& data, const std::string& path) {
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Status::IoError(fmt::format("{}: write failed: {}", path, std::strerror(errno)));
    done += static_cast<size_t>(n);
  }
  return Status::Ok();
}

json ref_json(const ImageRef& r) {
  return {{"op", "add"},
          {"id", r.id},
          {"tags", r.tags},
          {"phash", fmt::format("{:016x}", r.phash)},
          {"embedding", r.embedding},
          {"model", r.model}};
}

}  // namespace

Status ImageIndex::check_set_name(const std::string& set) {
  if (name_chars(set, 64, false)) return Status::Ok();
  return Status::InvalidArgument(
      fmt::format("set name '{}' must be 1-64 letters, digits, '_' or '-'", set));
}

Status ImageIndex::check_id(const std::string& id) {
  if (name_chars(id, 128, true)) return Status::Ok();
  return Status::InvalidArgument(
      fmt::format("image id '{}' must be 1-128 letters, digits, '_', '-', '.' or ':'", id));
}

Result<std::unique_ptr<ImageIndex>> ImageIndex::open(const std::filesystem::path& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Status::IoError(fmt::format("{}: cannot create: {}", dir.string(), ec.message()));
  std::unique_ptr<ImageIndex> index(new ImageIndex(dir));
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    if (entry.path().extension() != ".jsonl") continue;
    const std::string set = entry.path().stem().string();
    if (!check_set_name(set).ok()) continue;
    std::ifstream in(entry.path());
    Set s;
    std::string line;
    while (std::getline(in, line)) {
      ++s.lines;
      json j = json::parse(line, nullptr, false);
      if (j.is_discarded() || !j.is_object() || !j.contains("id") || !j["id"].is_string()) continue;
      const std::string id = j["id"].get<std::string>();
      std::erase_if(s.refs, [&](const ImageRef& r) { return r.id == id; });
      if (j.value("op", "") != "add") continue;
      try {
        ImageRef r;
        r.id = id;
        r.tags = j.at("tags").get<std::vector<std::string>>();
        r.phash = std::stoull(j.at("phash").get<std::string>(), nullptr, 16);
        r.embedding = j.at("embedding").get<std::vector<float>>();
        r.model = j.at("model").get<std::string>();
        s.refs.push_back(std::move(r));
      } catch (const std::exception&) {
        continue;  // a torn or foreign line: skipped
      }
    }
    s.generation = index->next_generation_++;
    if (s.lines > 2 * s.refs.size() + 16) {
      Status st = index->rewrite(set, s);
      if (!st.ok()) return st;
    }
    index->sets_[set] = std::move(s);
  }
  if (ec) return Status::IoError(fmt::format("{}: cannot list: {}", dir.string(), ec.message()));
  return index;
}

Status ImageIndex::append(const std::string& set, const std::string& line) {
  const std::string path = (dir_ / (set + ".jsonl")).string();
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
  if (!fd.valid()) return Status::IoError(fmt::format("{}: cannot open: {}", path, std::strerror(errno)));
  Status st = write_all(fd.get(), line + "\n", path);
  if (!st.ok()) return st;
  if (::fdatasync(fd.get()) != 0) {
    return Status::IoError(fmt::format("{}: fdatasync failed: {}", path, std::strerror(errno)));
  }
  return Status::Ok();
}

Status ImageIndex::rewrite(const std::string& set, Set& s) {
  const std::string path = (dir_ / (set + ".jsonl")).string();
  const std::string tmp = path + ".tmp";
  std::string text;
  for (const ImageRef& r : s.refs) text += ref_json(r).dump() + "\n";
  {
    UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (!fd.valid()) return Status::IoError(fmt::format("{}: cannot open: {}", tmp, std::strerror(errno)));
    Status st = write_all(fd.get(), text, tmp);
    if (!st.ok()) return st;
    if (::fdatasync(fd.get()) != 0) return Status::IoError(fmt::format("{}: fdatasync failed", tmp));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    return Status::IoError(fmt::format("{}: rename failed: {}", path, std::strerror(errno)));
  }
  s.lines = s.refs.size();
  return Status::Ok();
}

Status ImageIndex::add(const std::string& set, ImageRef ref) {
  if (Status st = check_set_name(set); !st.ok()) return st;
  if (Status st = check_id(ref.id); !st.ok()) return st;
  std::lock_guard lock(mu_);
  Status st = append(set, ref_json(ref).dump());
  if (!st.ok()) return st;
  Set& s = sets_[set];
  std::erase_if(s.refs, [&](const ImageRef& r) { return r.id == ref.id; });
  s.refs.push_back(std::move(ref));
  ++s.lines;
  s.generation = next_generation_++;
  return Status::Ok();
}

Status ImageIndex::remove(const std::string& set, const std::string& id) {
  std::lock_guard lock(mu_);
  auto it = sets_.find(set);
  if (it == sets_.end()) return Status::NotFound(fmt::format("no image set '{}'", set));
  Set& s = it->second;
  auto ref = std::find_if(s.refs.begin(), s.refs.end(), [&](const ImageRef& r) { return r.id == id; });
  if (ref == s.refs.end()) return Status::NotFound(fmt::format("no image '{}' in set '{}'", id, set));
  Status st = append(set, json{{"op", "remove"}, {"id", id}}.dump());
  if (!st.ok()) return st;
  s.refs.erase(ref);
  ++s.lines;
  s.generation = next_generation_++;
  if (s.lines > 2 * s.refs.size() + 16) return rewrite(set, s);
  return Status::Ok();
}

std::vector<ImageRef> ImageIndex::list(const std::string& set) const {
  std::lock_guard lock(mu_);
  auto it = sets_.find(set);
  return it == sets_.end() ? std::vector<ImageRef>{} : it->second.refs;
}

std::vector<std::pair<std::string, size_t>> ImageIndex::sets() const {
  std::lock_guard lock(mu_);
  std::vector<std::pair<std::string, size_t>> out;
  for (const auto& [name, s] : sets_) out.emplace_back(name, s.refs.size());
  return out;
}

uint64_t ImageIndex::generation(const std::string& set) const {
  std::lock_guard lock(mu_);
  auto it = sets_.find(set);
  return it == sets_.end() ? 0 : it->second.generation;
}

std::vector<ImageMatch> ImageIndex::match(const std::string& set, uint64_t phash,
                                          const std::vector<float>& embedding, const std::string& model,
                                          int max_distance, size_t top_k) const {
  std::vector<ImageMatch> out;
  std::lock_guard lock(mu_);
  auto it = sets_.find(set);
  if (it == sets_.end()) return out;
  for (const ImageRef& r : it->second.refs) {
    const int distance = std::popcount(r.phash ^ phash);
    if (distance > max_distance) continue;
    ImageMatch m;
    m.id = r.id;
    m.tags = r.tags;
    m.distance = distance;
    if (!embedding.empty() && r.model == model && r.embedding.size() == embedding.size()) {
      double dot = 0;
      for (size_t i = 0; i < embedding.size(); ++i) dot += static_cast<double>(embedding[i]) * r.embedding[i];
      m.score = dot;
      m.by_embedding = true;
    } else {
      m.score = 1.0 - distance / 64.0;
    }
    out.push_back(std::move(m));
  }
  std::sort(out.begin(), out.end(), [](const ImageMatch& a, const ImageMatch& b) {
    return a.score != b.score ? a.score > b.score : a.distance < b.distance;
  });
  if (out.size() > top_k) out.resize(top_k);
  return out;
}

}  // namespace infera::predict
