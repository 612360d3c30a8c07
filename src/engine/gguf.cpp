#include "engine/gguf.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cstdio>
#include <cstring>
#include <limits>
#include <type_traits>

#include "engine/mapped_file.h"

namespace infera::engine {

namespace {

// Smallest encodings, used to reject counts the remaining bytes cannot hold before
// anything is allocated for them.
constexpr uint64_t kMinKvBytes = 8 + 4 + 1;  // key length, value type, 1-byte value
constexpr uint64_t kMinTensorInfoBytes =
    8 + 4 + 8 + 4 + 8;                // name len, n_dims, 1 dim, type, offset
constexpr size_t kReserveCap = 4096;  // never reserve more than this from a claimed count

uint64_t scalar_size(GgufType type) {
  switch (type) {
    case GgufType::kUint8:
    case GgufType::kInt8:
    case GgufType::kBool:
      return 1;
    case GgufType::kUint16:
    case GgufType::kInt16:
      return 2;
    case GgufType::kUint32:
    case GgufType::kInt32:
    case GgufType::kFloat32:
      return 4;
    case GgufType::kUint64:
    case GgufType::kInt64:
    case GgufType::kFloat64:
      return 8;
    case GgufType::kString:
    case GgufType::kArray:
      return 0;
  }
  return 0;
}

bool valid_type(uint32_t raw) { return raw <= static_cast<uint32_t>(GgufType::kFloat64); }

// "1.2 GiB" style sizes keep messages about big files readable; exact bytes follow.
std::string human_bytes(uint64_t n) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  double v = static_cast<double>(n);
  int u = 0;
  while (v >= 1024.0 && u < 6) {
    v /= 1024.0;
    ++u;
  }
  char buf[48];
  if (u == 0) {
    std::snprintf(buf, sizeof(buf), "%llu B", static_cast<unsigned long long>(n));
  } else {
    std::snprintf(buf, sizeof(buf), "%.1f %s (%llu bytes)", v, units[u],
                  static_cast<unsigned long long>(n));
  }
  return buf;
}

// Sequential little-endian reader over the validated-so-far prefix of the file.
class Cursor {
 public:
  Cursor(std::span<const uint8_t> bytes, const std::string& name) : bytes_(bytes), name_(name) {}

  uint64_t pos() const { return pos_; }
  uint64_t remaining() const { return bytes_.size() - pos_; }

  template <typename T>
  bool read(T& out) {
    static_assert(std::is_trivially_copyable_v<T>);
    if (remaining() < sizeof(T)) return false;
    std::memcpy(&out, bytes_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return true;
  }

  bool skip(uint64_t n) {
    if (remaining() < n) return false;
    pos_ += n;
    return true;
  }

  // A u64 length followed by that many bytes.
  bool read_string(std::string_view& out) {
    uint64_t len = 0;
    if (!read(len) || remaining() < len) return false;
    out = {reinterpret_cast<const char*>(bytes_.data() + pos_), static_cast<size_t>(len)};
    pos_ += len;
    return true;
  }

  std::span<const uint8_t> span_from(uint64_t start) const {
    return bytes_.subspan(static_cast<size_t>(start), static_cast<size_t>(pos_ - start));
  }

  Status truncated(const std::string& where) const {
    return Status::Corrupt(name_ + ": file truncated in " + where + " (at byte " +
                           std::to_string(pos_) + " of " + std::to_string(bytes_.size()) + ")");
  }

 private:
  std::span<const uint8_t> bytes_;
  const std::string& name_;
  uint64_t pos_ = 0;
};

std::string quoted(std::string_view s) {
  constexpr size_t kMaxShown = 80;  // hostile names can be huge; show a prefix
  std::string out = "'";
  for (char c : s.substr(0, kMaxShown)) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02x", u);
      out += buf;
    } else {
      out += c;
    }
  }
  if (s.size() > kMaxShown) out += "...";
  return out + "'";
}

// Reads one value of `type` (a scalar, a string, or an array of either) and
// checks every length against the bytes left.
Status read_value(Cursor& cur, const std::string& file, const std::string& where, GgufKv& kv) {
  const uint64_t start = cur.pos();
  if (kv.type == GgufType::kString) {
    std::string_view s;
    if (!cur.read_string(s)) return cur.truncated(where);
    kv.payload = {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
    return Status::Ok();
  }
  if (kv.type != GgufType::kArray) {
    if (kv.type == GgufType::kBool) {
      uint8_t b = 0;
      if (!cur.read(b)) return cur.truncated(where);
      if (b > 1)
        return Status::Corrupt(file + ": " + where + " is a bool with value " + std::to_string(b));
    } else if (!cur.skip(scalar_size(kv.type))) {
      return cur.truncated(where);
    }
    kv.payload = cur.span_from(start);
    return Status::Ok();
  }
  uint32_t raw_elem = 0;
  uint64_t count = 0;
  if (!cur.read(raw_elem) || !cur.read(count)) return cur.truncated(where);
  if (!valid_type(raw_elem)) {
    return Status::Corrupt(file + ": " + where + " is an array of unknown type " +
                           std::to_string(raw_elem));
  }
  kv.array_type = static_cast<GgufType>(raw_elem);
  if (kv.array_type == GgufType::kArray) {
    return Status::Unsupported(file + ": " + where +
                               " is an array of arrays, which is not supported");
  }
  const uint64_t min_elem = kv.array_type == GgufType::kString ? 8 : scalar_size(kv.array_type);
  if (count > cur.remaining() / min_elem) {
    return Status::Corrupt(file + ": file truncated or corrupt: " + where + " claims " +
                           std::to_string(count) + " array elements but only " +
                           std::to_string(cur.remaining()) + " bytes are left");
  }
  kv.array_count = count;
  const uint64_t elems_start = cur.pos();
  if (kv.array_type == GgufType::kString) {
    for (uint64_t i = 0; i < count; ++i) {
      std::string_view s;
      if (!cur.read_string(s))
        return cur.truncated(where + ", string element " + std::to_string(i));
    }
  } else if (kv.array_type == GgufType::kBool) {
    for (uint64_t i = 0; i < count; ++i) {
      uint8_t b = 0;
      if (!cur.read(b)) return cur.truncated(where);
      if (b > 1) {
        return Status::Corrupt(file + ": " + where + " element " + std::to_string(i) +
                               " is a bool with value " + std::to_string(b));
      }
    }
  } else if (!cur.skip(count * min_elem)) {
    return cur.truncated(where);
  }
  kv.payload = cur.span_from(elems_start);
  return Status::Ok();
}

uint64_t align_up(uint64_t v, uint64_t alignment) {
  const uint64_t rem = v % alignment;
  return rem == 0 ? v : v + (alignment - rem);
}

template <typename T>
constexpr GgufType gguf_type_of() {
  if constexpr (std::is_same_v<T, uint8_t>)
    return GgufType::kUint8;
  else if constexpr (std::is_same_v<T, int8_t>)
    return GgufType::kInt8;
  else if constexpr (std::is_same_v<T, uint16_t>)
    return GgufType::kUint16;
  else if constexpr (std::is_same_v<T, int16_t>)
    return GgufType::kInt16;
  else if constexpr (std::is_same_v<T, uint32_t>)
    return GgufType::kUint32;
  else if constexpr (std::is_same_v<T, int32_t>)
    return GgufType::kInt32;
  else if constexpr (std::is_same_v<T, uint64_t>)
    return GgufType::kUint64;
  else if constexpr (std::is_same_v<T, int64_t>)
    return GgufType::kInt64;
  else if constexpr (std::is_same_v<T, float>)
    return GgufType::kFloat32;
  else if constexpr (std::is_same_v<T, double>)
    return GgufType::kFloat64;
  else if constexpr (std::is_same_v<T, bool>)
    return GgufType::kBool;
  else {
    static_assert(std::is_same_v<T, std::string_view>, "unsupported GGUF value type");
    return GgufType::kString;
  }
}

// Decodes element `T` at `p`. Strings are length-prefixed; `p` advances past it.
template <typename T>
T decode(const uint8_t*& p) {
  if constexpr (std::is_same_v<T, std::string_view>) {
    uint64_t len = 0;
    std::memcpy(&len, p, 8);
    std::string_view s(reinterpret_cast<const char*>(p + 8), static_cast<size_t>(len));
    p += 8 + len;
    return s;
  } else if constexpr (std::is_same_v<T, bool>) {
    return *p++ != 0;
  } else {
    T v;
    std::memcpy(&v, p, sizeof(T));
    p += sizeof(T);
    return v;
  }
}

}  // namespace

std::string_view gguf_type_name(GgufType type) {
  switch (type) {
    case GgufType::kUint8:
      return "u8";
    case GgufType::kInt8:
      return "i8";
    case GgufType::kUint16:
      return "u16";
    case GgufType::kInt16:
      return "i16";
    case GgufType::kUint32:
      return "u32";
    case GgufType::kInt32:
      return "i32";
    case GgufType::kFloat32:
      return "f32";
    case GgufType::kBool:
      return "bool";
    case GgufType::kString:
      return "string";
    case GgufType::kArray:
      return "array";
    case GgufType::kUint64:
      return "u64";
    case GgufType::kInt64:
      return "i64";
    case GgufType::kFloat64:
      return "f64";
  }
  return "unknown";
}

GgufFile::~GgufFile() = default;

Result<std::unique_ptr<GgufFile>> GgufFile::open(const std::string& path, LoadMode mode) {
  auto mapped = MappedFile::open(path, mode);
  if (!mapped.ok()) return mapped.status();
  std::unique_ptr<GgufFile> file(new GgufFile());
  file->name_ = path;
  file->bytes_ = (*mapped)->bytes();
  file->mapping_ = std::move(mapped).value();
  return parse(std::move(file));
}

Result<std::unique_ptr<GgufFile>> GgufFile::from_memory(std::span<const uint8_t> bytes,
                                                        std::string name) {
  std::unique_ptr<GgufFile> file(new GgufFile());
  file->name_ = std::move(name);
  file->bytes_ = bytes;
  return parse(std::move(file));
}

Result<std::unique_ptr<GgufFile>> GgufFile::parse(std::unique_ptr<GgufFile> file) {
  if constexpr (std::endian::native != std::endian::little) {
    return Status::Unsupported(file->name_ + ": GGUF reading needs a little-endian machine");
  }
  const std::string& name = file->name_;
  Cursor cur(file->bytes_, name);

  uint32_t magic = 0;
  if (!cur.read(magic)) return cur.truncated("the magic number");
  if (magic != kGgufMagic) {
    return Status::Corrupt(name + ": not a GGUF file (starts with " +
                           quoted({reinterpret_cast<const char*>(file->bytes_.data()), 4}) +
                           ", expected 'GGUF')");
  }
  uint32_t version = 0;
  if (!cur.read(version)) return cur.truncated("the version");
  if (version != 2 && version != 3) {
    const uint32_t swapped = __builtin_bswap32(version);
    if (swapped >= 1 && swapped <= 3) {
      return Status::Unsupported(name + ": big-endian GGUF files are not supported");
    }
    if (version == 1)
      return Status::Unsupported(name + ": GGUF version 1 is not supported (convert to v3)");
    return Status::Unsupported(name + ": unsupported GGUF version " + std::to_string(version) +
                               " (supported: 2, 3)");
  }
  file->version_ = version;

  uint64_t n_tensors = 0;
  uint64_t n_kv = 0;
  if (!cur.read(n_tensors)) return cur.truncated("the tensor count");
  if (!cur.read(n_kv)) return cur.truncated("the metadata count");
  // Counts up to kReserveCap are checked entry by entry instead, which names the
  // entry that is cut short; larger ones must at least fit in the file.
  if (n_kv > kReserveCap && n_kv > cur.remaining() / kMinKvBytes) {
    return Status::Corrupt(name + ": file truncated or corrupt: metadata count " +
                           std::to_string(n_kv) + " cannot fit in the " +
                           std::to_string(cur.remaining()) + " bytes left");
  }

  file->kvs_.reserve(std::min<uint64_t>(n_kv, kReserveCap));
  for (uint64_t i = 0; i < n_kv; ++i) {
    GgufKv kv{};
    const std::string where = "metadata entry " + std::to_string(i);
    if (!cur.read_string(kv.key)) return cur.truncated(where + " key");
    const std::string key_where = where + " (" + quoted(kv.key) + ")";
    uint32_t raw_type = 0;
    if (!cur.read(raw_type)) return cur.truncated(key_where + " type");
    if (!valid_type(raw_type)) {
      return Status::Corrupt(name + ": " + key_where + " has unknown value type " +
                             std::to_string(raw_type));
    }
    kv.type = static_cast<GgufType>(raw_type);
    kv.array_type = kv.type;
    if (Status s = read_value(cur, name, key_where, kv); !s.ok()) return s;
    if (!file->kv_index_.emplace(kv.key, file->kvs_.size()).second) {
      return Status::Corrupt(name + ": duplicate metadata key " + quoted(kv.key));
    }
    file->kvs_.push_back(kv);
  }

  if (const GgufKv* a = file->find("general.alignment")) {
    if (a->type != GgufType::kUint32) {
      return Status::Corrupt(name + ": general.alignment is " +
                             std::string(gguf_type_name(a->type)) + ", expected u32");
    }
    uint32_t alignment = 0;
    std::memcpy(&alignment, a->payload.data(), 4);
    if (alignment == 0 || !std::has_single_bit(alignment)) {
      return Status::Corrupt(name + ": general.alignment " + std::to_string(alignment) +
                             " is not a power of two");
    }
    file->alignment_ = alignment;
  }

  if (n_tensors > kReserveCap && n_tensors > cur.remaining() / kMinTensorInfoBytes) {
    return Status::Corrupt(name + ": file truncated or corrupt: tensor count " +
                           std::to_string(n_tensors) + " cannot fit in the " +
                           std::to_string(cur.remaining()) + " bytes left");
  }
  file->tensors_.reserve(std::min<uint64_t>(n_tensors, kReserveCap));
  for (uint64_t i = 0; i < n_tensors; ++i) {
    GgufTensor t{};
    const std::string where = "tensor info " + std::to_string(i);
    if (!cur.read_string(t.name)) return cur.truncated(where + " name");
    const std::string tw = "tensor " + quoted(t.name);
    if (!cur.read(t.n_dims)) return cur.truncated(tw + " dimension count");
    if (t.n_dims == 0 || t.n_dims > kGgufMaxDims) {
      return Status::Corrupt(name + ": " + tw + " has " + std::to_string(t.n_dims) +
                             " dimensions (allowed: 1 to " + std::to_string(kGgufMaxDims) + ")");
    }
    t.dims = {1, 1, 1, 1};
    uint64_t n_elements = 1;
    for (uint32_t d = 0; d < t.n_dims; ++d) {
      uint64_t dim = 0;
      if (!cur.read(dim)) return cur.truncated(tw + " dimensions");
      if (dim == 0 || dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return Status::Corrupt(name + ": " + tw + " dimension " + std::to_string(d) + " is " +
                               std::to_string(dim) + " (must be positive)");
      }
      if (__builtin_mul_overflow(n_elements, dim, &n_elements) ||
          n_elements > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return Status::Corrupt(name + ": " + tw + " has too many elements");
      }
      t.dims[d] = static_cast<int64_t>(dim);
    }
    uint32_t raw_type = 0;
    if (!cur.read(raw_type)) return cur.truncated(tw + " type");
    const GgmlTypeInfo* info = ggml_type_info(raw_type);
    if (info == nullptr) {
      return Status::Unsupported(name + ": " + tw + " has unknown ggml type " +
                                 std::to_string(raw_type));
    }
    t.type = info->type;
    if (!cur.read(t.offset)) return cur.truncated(tw + " offset");
    const std::optional<uint64_t> row = ggml_row_bytes(t.type, t.dims[0]);
    if (!row) {
      return Status::Corrupt(name + ": " + tw + " rows of " + std::to_string(t.dims[0]) +
                             " elements are not a multiple of the " + std::string(info->name) +
                             " block size " + std::to_string(info->block_size));
    }
    const uint64_t n_rows = n_elements / static_cast<uint64_t>(t.dims[0]);
    if (__builtin_mul_overflow(*row, n_rows, &t.n_bytes)) {
      return Status::Corrupt(name + ": " + tw + " size overflows");
    }
    if (t.offset % file->alignment_ != 0) {
      return Status::Corrupt(name + ": " + tw + " offset " + std::to_string(t.offset) +
                             " is not a multiple of the alignment " +
                             std::to_string(file->alignment_));
    }
    if (!file->tensor_index_.emplace(t.name, file->tensors_.size()).second) {
      return Status::Corrupt(name + ": duplicate tensor name " + quoted(t.name));
    }
    file->tensors_.push_back(t);
  }

  const uint64_t size = file->bytes_.size();
  file->data_offset_ = align_up(cur.pos(), file->alignment_);
  if (n_tensors > 0 && file->data_offset_ > size) {
    return Status::Corrupt(
        name + ": file truncated before the tensor data (data would start at byte " +
        std::to_string(file->data_offset_) + ", file is " + std::to_string(size) + " bytes)");
  }
  const uint64_t data_size = n_tensors > 0 ? size - file->data_offset_ : 0;
  for (GgufTensor& t : file->tensors_) {
    if (t.offset > data_size || t.n_bytes > data_size - t.offset) {
      return Status::Corrupt(name + ": tensor " + quoted(t.name) +
                             " extends past end of file (offset " +
                             human_bytes(file->data_offset_ + t.offset) + ", size " +
                             human_bytes(t.n_bytes) + ", file " + human_bytes(size) + ")");
    }
    t.data = file->bytes_.data() + file->data_offset_ + t.offset;
  }
  std::vector<const GgufTensor*> by_offset;
  by_offset.reserve(file->tensors_.size());
  for (const GgufTensor& t : file->tensors_) by_offset.push_back(&t);
  std::sort(by_offset.begin(), by_offset.end(),
            [](const GgufTensor* a, const GgufTensor* b) { return a->offset < b->offset; });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const GgufTensor& a = *by_offset[i - 1];
    const GgufTensor& b = *by_offset[i];
    if (a.offset + a.n_bytes > b.offset) {
      return Status::Corrupt(name + ": tensors " + quoted(a.name) + " (bytes " +
                             std::to_string(a.offset) + ".." +
                             std::to_string(a.offset + a.n_bytes) + ") and " + quoted(b.name) +
                             " (from " + std::to_string(b.offset) + ") overlap");
    }
  }
  return file;
}

const GgufKv* GgufFile::find(std::string_view key) const {
  auto it = kv_index_.find(key);
  return it == kv_index_.end() ? nullptr : &kvs_[it->second];
}

const GgufTensor* GgufFile::find_tensor(std::string_view name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

namespace {

Status missing_key(const std::string& file, std::string_view key) {
  return Status::NotFound(file + ": metadata key '" + std::string(key) + "' not found");
}

Status wrong_type(const std::string& file, const GgufKv& kv, const std::string& expected) {
  std::string actual(gguf_type_name(kv.type));
  if (kv.type == GgufType::kArray)
    actual = "array of " + std::string(gguf_type_name(kv.array_type));
  return Status::InvalidArgument(file + ": metadata key '" + std::string(kv.key) + "' is " +
                                 actual + ", expected " + expected);
}

}  // namespace

template <typename T>
Result<T> GgufFile::get(std::string_view key) const {
  const GgufKv* kv = find(key);
  if (kv == nullptr) return missing_key(name_, key);
  constexpr GgufType want = gguf_type_of<T>();
  if (kv->type != want) return wrong_type(name_, *kv, std::string(gguf_type_name(want)));
  if constexpr (std::is_same_v<T, std::string_view>) {
    return std::string_view(reinterpret_cast<const char*>(kv->payload.data()), kv->payload.size());
  } else {
    const uint8_t* p = kv->payload.data();
    return decode<T>(p);
  }
}

template <typename T>
Result<T> GgufFile::get_or(std::string_view key, T fallback) const {
  if (!has(key)) return fallback;
  return get<T>(key);
}

Result<int64_t> GgufFile::get_integer(std::string_view key) const {
  const GgufKv* kv = find(key);
  if (kv == nullptr) return missing_key(name_, key);
  const uint8_t* p = kv->payload.data();
  switch (kv->type) {
    case GgufType::kUint8:
      return static_cast<int64_t>(decode<uint8_t>(p));
    case GgufType::kInt8:
      return static_cast<int64_t>(decode<int8_t>(p));
    case GgufType::kUint16:
      return static_cast<int64_t>(decode<uint16_t>(p));
    case GgufType::kInt16:
      return static_cast<int64_t>(decode<int16_t>(p));
    case GgufType::kUint32:
      return static_cast<int64_t>(decode<uint32_t>(p));
    case GgufType::kInt32:
      return static_cast<int64_t>(decode<int32_t>(p));
    case GgufType::kInt64:
      return decode<int64_t>(p);
    case GgufType::kUint64: {
      const uint64_t v = decode<uint64_t>(p);
      if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return Status::InvalidArgument(name_ + ": metadata key '" + std::string(key) + "' value " +
                                       std::to_string(v) + " is out of range");
      }
      return static_cast<int64_t>(v);
    }
    default:
      return wrong_type(name_, *kv, "an integer");
  }
}

template <typename T>
Result<std::vector<T>> GgufFile::get_array(std::string_view key) const {
  const GgufKv* kv = find(key);
  if (kv == nullptr) return missing_key(name_, key);
  constexpr GgufType want = gguf_type_of<T>();
  if (kv->type != GgufType::kArray || kv->array_type != want) {
    return wrong_type(name_, *kv, "array of " + std::string(gguf_type_name(want)));
  }
  std::vector<T> out;
  out.reserve(static_cast<size_t>(kv->array_count));  // validated against the file size
  const uint8_t* p = kv->payload.data();
  for (uint64_t i = 0; i < kv->array_count; ++i) out.push_back(decode<T>(p));
  return out;
}

#define INFERA_GGUF_INSTANTIATE(T)                                   \
  template Result<T> GgufFile::get<T>(std::string_view) const;       \
  template Result<T> GgufFile::get_or<T>(std::string_view, T) const; \
  template Result<std::vector<T>> GgufFile::get_array<T>(std::string_view) const;

INFERA_GGUF_INSTANTIATE(uint8_t)
INFERA_GGUF_INSTANTIATE(int8_t)
INFERA_GGUF_INSTANTIATE(uint16_t)
INFERA_GGUF_INSTANTIATE(int16_t)
INFERA_GGUF_INSTANTIATE(uint32_t)
INFERA_GGUF_INSTANTIATE(int32_t)
INFERA_GGUF_INSTANTIATE(uint64_t)
INFERA_GGUF_INSTANTIATE(int64_t)
INFERA_GGUF_INSTANTIATE(float)
INFERA_GGUF_INSTANTIATE(double)
INFERA_GGUF_INSTANTIATE(bool)
INFERA_GGUF_INSTANTIATE(std::string_view)

#undef INFERA_GGUF_INSTANTIATE

FileIdentity GgufFile::identity() const {
  return mapping_ != nullptr ? mapping_->identity() : FileIdentity{};
}

void GgufFile::prefault() const {
#ifdef MADV_POPULATE_READ
  if (bytes_.empty()) return;
  const auto page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const auto begin = reinterpret_cast<uintptr_t>(bytes_.data()) / page * page;
  const auto end = reinterpret_cast<uintptr_t>(bytes_.data()) + bytes_.size();
  ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_POPULATE_READ);
#endif
}

}  // namespace infera::engine
