#include "http/gzip.h"

#include <zlib.h>

#include <cctype>
#include <stdexcept>

namespace infera::http {

std::string gzip_compress(std::string_view data) {
  z_stream zs{};
  // windowBits 15 + 16 selects the gzip wrapper.
  if (deflateInit2(&zs, 1, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
    throw std::runtime_error("zlib deflateInit2 failed");
  }
  std::string out;
  out.resize(deflateBound(&zs, static_cast<uLong>(data.size())) + 32);
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  zs.avail_in = static_cast<uInt>(data.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  int rc = deflate(&zs, Z_FINISH);
  deflateEnd(&zs);
  if (rc != Z_STREAM_END) throw std::runtime_error("zlib deflate failed");
  out.resize(zs.total_out);
  return out;
}

bool accepts_gzip(std::string_view header) {
  // Tokens are comma-separated, each optionally with ";q=VALUE".
  size_t pos = 0;
  while (pos < header.size()) {
    size_t end = header.find(',', pos);
    if (end == std::string_view::npos) end = header.size();
    std::string_view token = header.substr(pos, end - pos);
    pos = end + 1;
    while (!token.empty() && std::isspace(static_cast<unsigned char>(token.front()))) token.remove_prefix(1);
    size_t semi = token.find(';');
    std::string_view coding = token.substr(0, semi);
    while (!coding.empty() && std::isspace(static_cast<unsigned char>(coding.back()))) coding.remove_suffix(1);
    if (coding != "gzip" && coding != "*") continue;
    if (semi == std::string_view::npos) return true;
    std::string_view params = token.substr(semi + 1);
    size_t q = params.find("q=");
    if (q == std::string_view::npos) return true;
    std::string value(params.substr(q + 2));
    return std::strtod(value.c_str(), nullptr) > 0;
  }
  return false;
}

}  // namespace infera::http
