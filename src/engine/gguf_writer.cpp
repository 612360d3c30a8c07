#include "engine/gguf_writer.h"

#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <type_traits>

namespace infera::engine {

namespace {

template <typename T>
void append_le(std::vector<uint8_t>& out, T v) {
  static_assert(std::is_trivially_copyable_v<T>);
  uint8_t buf[sizeof(T)];
  std::memcpy(buf, &v, sizeof(T));
  out.insert(out.end(), buf, buf + sizeof(T));
}

void append_string(std::vector<uint8_t>& out, std::string_view s) {
  append_le<uint64_t>(out, s.size());
  out.insert(out.end(), s.begin(), s.end());
}

template <typename T>
constexpr GgufType type_of() {
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
  else {
    static_assert(std::is_same_v<T, bool>, "unsupported GGUF scalar type");
    return GgufType::kBool;
  }
}

template <typename T>
void append_scalar(std::vector<uint8_t>& out, T v) {
  if constexpr (std::is_same_v<T, bool>) {
    out.push_back(v ? 1 : 0);
  } else {
    append_le<T>(out, v);
  }
}

// Closes a FILE* on scope exit.
struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};

}  // namespace

GgufWriter::Kv& GgufWriter::slot(std::string_view key) {
  for (Kv& kv : kvs_) {
    if (kv.key == key) {
      kv.payload.clear();
      kv.array_count = 0;
      return kv;
    }
  }
  kvs_.push_back(Kv{std::string(key), GgufType::kUint8, GgufType::kUint8, 0, {}});
  return kvs_.back();
}

template <typename T>
void GgufWriter::set(std::string_view key, T value) {
  Kv& kv = slot(key);
  kv.type = kv.array_type = type_of<T>();
  append_scalar(kv.payload, value);
}

void GgufWriter::set_string(std::string_view key, std::string_view value) {
  Kv& kv = slot(key);
  kv.type = kv.array_type = GgufType::kString;
  kv.payload.assign(value.begin(), value.end());
}

template <typename T>
void GgufWriter::set_array(std::string_view key, std::span<const T> values) {
  Kv& kv = slot(key);
  kv.type = GgufType::kArray;
  kv.array_type = type_of<T>();
  kv.array_count = values.size();
  kv.payload.reserve(values.size() * sizeof(T));
  for (const T& v : values) append_scalar(kv.payload, v);
}

void GgufWriter::set_string_array(std::string_view key, std::span<const std::string_view> values) {
  Kv& kv = slot(key);
  kv.type = GgufType::kArray;
  kv.array_type = GgufType::kString;
  kv.array_count = values.size();
  for (std::string_view v : values) append_string(kv.payload, v);
}

void GgufWriter::set_string_array(std::string_view key, std::span<const std::string> values) {
  std::vector<std::string_view> views(values.begin(), values.end());
  set_string_array(key, std::span<const std::string_view>(views));
}

void GgufWriter::copy_metadata(const GgufFile& src,
                               const std::function<bool(std::string_view)>& keep) {
  for (const GgufKv& in : src.metadata()) {
    if (keep && !keep(in.key)) continue;
    Kv& kv = slot(in.key);
    kv.type = in.type;
    kv.array_type = in.array_type;
    kv.array_count = in.array_count;
    kv.payload.assign(in.payload.begin(), in.payload.end());
  }
}

void GgufWriter::remove(std::string_view key) {
  std::erase_if(kvs_, [&](const Kv& kv) { return kv.key == key; });
}

bool GgufWriter::has(std::string_view key) const {
  for (const Kv& kv : kvs_) {
    if (kv.key == key) return true;
  }
  return false;
}

void GgufWriter::set_alignment(uint32_t alignment) {
  set<uint32_t>("general.alignment", alignment);
}

uint64_t GgufWriter::alignment() const {
  for (const Kv& kv : kvs_) {
    if (kv.key == "general.alignment" && kv.type == GgufType::kUint32) {
      uint32_t a = 0;
      std::memcpy(&a, kv.payload.data(), 4);
      if (a != 0 && std::has_single_bit(a)) return a;
    }
  }
  return kGgufDefaultAlignment;
}

Status GgufWriter::check_tensor(std::string_view name, GgmlType type, std::span<const int64_t> dims,
                                uint64_t& n_bytes) const {
  const std::string what = "tensor '" + std::string(name) + "'";
  if (name.empty() || name.size() > kMaxTensorNameBytes) {
    return Status::InvalidArgument(what + ": name must be 1 to " +
                                   std::to_string(kMaxTensorNameBytes) + " bytes");
  }
  for (const Tensor& t : tensors_) {
    if (t.name == name) return Status::InvalidArgument(what + ": duplicate name");
  }
  if (dims.empty() || dims.size() > kGgufMaxDims) {
    return Status::InvalidArgument(what + ": needs 1 to 4 dimensions, got " +
                                   std::to_string(dims.size()));
  }
  uint64_t rows = 1;
  for (size_t d = 0; d < dims.size(); ++d) {
    if (dims[d] <= 0)
      return Status::InvalidArgument(what + ": dimension " + std::to_string(d) +
                                     " is not positive");
    if (d > 0 && __builtin_mul_overflow(rows, static_cast<uint64_t>(dims[d]), &rows)) {
      return Status::InvalidArgument(what + ": too many elements");
    }
  }
  const std::optional<uint64_t> row = ggml_row_bytes(type, dims[0]);
  if (!row) {
    return Status::InvalidArgument(what + ": row of " + std::to_string(dims[0]) +
                                   " elements is not a whole number of " +
                                   std::string(ggml_type_name(type)) + " blocks");
  }
  if (__builtin_mul_overflow(*row, rows, &n_bytes))
    return Status::InvalidArgument(what + ": too large");
  return Status::Ok();
}

Status GgufWriter::add_tensor(std::string_view name, GgmlType type, std::span<const int64_t> dims,
                              std::span<const uint8_t> bytes) {
  uint64_t n_bytes = 0;
  if (Status s = check_tensor(name, type, dims, n_bytes); !s.ok()) return s;
  if (bytes.size() != n_bytes) {
    return Status::InvalidArgument(
        "tensor '" + std::string(name) + "': " + std::to_string(bytes.size()) +
        " bytes given, its shape and type need " + std::to_string(n_bytes));
  }
  tensors_.push_back(Tensor{std::string(name),
                            type,
                            {dims.begin(), dims.end()},
                            n_bytes,
                            {bytes.begin(), bytes.end()},
                            {}});
  return Status::Ok();
}

Status GgufWriter::add_tensor(std::string_view name, GgmlType type, std::span<const int64_t> dims,
                              TensorFiller fill) {
  uint64_t n_bytes = 0;
  if (Status s = check_tensor(name, type, dims, n_bytes); !s.ok()) return s;
  if (!fill) return Status::InvalidArgument("tensor '" + std::string(name) + "': empty filler");
  tensors_.push_back(
      Tensor{std::string(name), type, {dims.begin(), dims.end()}, n_bytes, {}, std::move(fill)});
  return Status::Ok();
}

Status GgufWriter::emit(const std::function<Status(std::span<const uint8_t>)>& sink) const {
  const uint64_t align = alignment();
  std::vector<uint8_t> head;
  append_le<uint32_t>(head, kGgufMagic);
  append_le<uint32_t>(head, 3);
  append_le<uint64_t>(head, tensors_.size());
  append_le<uint64_t>(head, kvs_.size());
  for (const Kv& kv : kvs_) {
    append_string(head, kv.key);
    append_le<uint32_t>(head, static_cast<uint32_t>(kv.type));
    if (kv.type == GgufType::kArray) {
      append_le<uint32_t>(head, static_cast<uint32_t>(kv.array_type));
      append_le<uint64_t>(head, kv.array_count);
    } else if (kv.type == GgufType::kString) {
      append_le<uint64_t>(head, kv.payload.size());
    }
    head.insert(head.end(), kv.payload.begin(), kv.payload.end());
  }
  uint64_t offset = 0;
  for (const Tensor& t : tensors_) {
    append_string(head, t.name);
    append_le<uint32_t>(head, static_cast<uint32_t>(t.dims.size()));
    for (int64_t d : t.dims) append_le<uint64_t>(head, static_cast<uint64_t>(d));
    append_le<uint32_t>(head, static_cast<uint32_t>(t.type));
    append_le<uint64_t>(head, offset);
    offset += (t.n_bytes + align - 1) / align * align;
  }
  if (!tensors_.empty()) head.resize((head.size() + align - 1) / align * align, 0);
  if (Status s = sink(head); !s.ok()) return s;

  std::vector<uint8_t> scratch;
  const std::vector<uint8_t> padding(align, 0);
  for (const Tensor& t : tensors_) {
    std::span<const uint8_t> data = t.bytes;
    if (t.fill) {
      scratch.assign(static_cast<size_t>(t.n_bytes), 0);
      t.fill(scratch);
      data = scratch;
    }
    if (Status s = sink(data); !s.ok()) return s;
    const uint64_t pad = (align - t.n_bytes % align) % align;
    if (Status s = sink(std::span<const uint8_t>(padding).first(pad)); !s.ok()) return s;
  }
  return Status::Ok();
}

Status GgufWriter::write(const std::string& path) const {
  const std::string tmp = path + ".tmp";
  std::unique_ptr<std::FILE, FileCloser> f(std::fopen(tmp.c_str(), "wb"));
  if (!f) return Status::IoError(tmp + ": cannot create: " + std::strerror(errno));
  Status s = emit([&](std::span<const uint8_t> chunk) {
    if (!chunk.empty() && std::fwrite(chunk.data(), 1, chunk.size(), f.get()) != chunk.size()) {
      return Status::IoError(tmp + ": write failed: " + std::strerror(errno));
    }
    return Status::Ok();
  });
  if (s.ok() && std::fflush(f.get()) != 0)
    s = Status::IoError(tmp + ": write failed: " + std::strerror(errno));
  std::FILE* raw = f.release();
  if (std::fclose(raw) != 0 && s.ok())
    s = Status::IoError(tmp + ": close failed: " + std::strerror(errno));
  if (s.ok() && std::rename(tmp.c_str(), path.c_str()) != 0) {
    s = Status::IoError(path + ": cannot rename from " + tmp + ": " + std::strerror(errno));
  }
  if (!s.ok()) std::remove(tmp.c_str());
  return s;
}

std::vector<uint8_t> GgufWriter::to_bytes() const {
  std::vector<uint8_t> out;
  Status s = emit([&](std::span<const uint8_t> chunk) {
    out.insert(out.end(), chunk.begin(), chunk.end());
    return Status::Ok();
  });
  (void)s;  // the in-memory sink never fails
  return out;
}

#define INFERA_GGUF_WRITER_INSTANTIATE(T)                \
  template void GgufWriter::set<T>(std::string_view, T); \
  template void GgufWriter::set_array<T>(std::string_view, std::span<const T>);

INFERA_GGUF_WRITER_INSTANTIATE(uint8_t)
INFERA_GGUF_WRITER_INSTANTIATE(int8_t)
INFERA_GGUF_WRITER_INSTANTIATE(uint16_t)
INFERA_GGUF_WRITER_INSTANTIATE(int16_t)
INFERA_GGUF_WRITER_INSTANTIATE(uint32_t)
INFERA_GGUF_WRITER_INSTANTIATE(int32_t)
INFERA_GGUF_WRITER_INSTANTIATE(uint64_t)
INFERA_GGUF_WRITER_INSTANTIATE(int64_t)
INFERA_GGUF_WRITER_INSTANTIATE(float)
INFERA_GGUF_WRITER_INSTANTIATE(double)
INFERA_GGUF_WRITER_INSTANTIATE(bool)

#undef INFERA_GGUF_WRITER_INSTANTIATE

}  // namespace infera::engine
