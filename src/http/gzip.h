// gzip encoding of response bodies (zlib, RFC 1952 framing).
#pragma once

#include <string>
#include <string_view>

namespace infera::http {

// Returns the gzip-compressed form of `data` (level 1: fast; responses are small).
std::string gzip_compress(std::string_view data);
// True when an Accept-Encoding header value allows gzip (q > 0).
bool accepts_gzip(std::string_view accept_encoding);

}  // namespace infera::http
