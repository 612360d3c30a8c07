// GGUF reader/writer tests: the real files in ../shared/models, writer -> reader
// round trips, and one malformed file per validation rule with its error.
#include "engine/gguf.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <vector>

#include "engine/gguf_writer.h"

namespace infera::engine {
namespace {

const std::string kModels = INFERA_SHARED_MODELS;

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() /
          ("infera_gguf_test_" + std::to_string(::getpid()) + "_" + name))
      .string();
}

// Builds GGUF images byte by byte, so a test can write exactly the field it breaks.
class Raw {
 public:
  Raw& u32(uint32_t v) { return put(&v, 4); }
  Raw& u64(uint64_t v) { return put(&v, 8); }
  Raw& u8(uint8_t v) { return put(&v, 1); }
  Raw& str(std::string_view s) {
    u64(s.size());
    return put(s.data(), s.size());
  }
  Raw& header(uint64_t n_tensors, uint64_t n_kv, uint32_t version = 3) {
    return u32(kGgufMagic).u32(version).u64(n_tensors).u64(n_kv);
  }
  Raw& kv_u32(std::string_view key, uint32_t v) {
    return str(key).u32(static_cast<uint32_t>(GgufType::kUint32)).u32(v);
  }
  Raw& tensor(std::string_view name, std::vector<uint64_t> dims, uint32_t type, uint64_t offset) {
    str(name).u32(static_cast<uint32_t>(dims.size()));
    for (uint64_t d : dims) u64(d);
    return u32(type).u64(offset);
  }
  Raw& pad_to(size_t alignment) {
    while (bytes.size() % alignment != 0) bytes.push_back(0);
    return *this;
  }
  Raw& zeros(size_t n) {
    bytes.insert(bytes.end(), n, 0);
    return *this;
  }
  size_t size() const { return bytes.size(); }

  std::vector<uint8_t> bytes;

 private:
  Raw& put(const void* p, size_t n) {
    const auto* b = static_cast<const uint8_t*>(p);
    bytes.insert(bytes.end(), b, b + n);
    return *this;
  }
};

constexpr uint32_t kF32 = 0;

Status parse(const std::vector<uint8_t>& bytes) {
  auto f = GgufFile::from_memory(bytes, "bad.gguf");
  return f.ok() ? Status::Ok() : f.status();
}

// Expects parsing to fail with `code` and a message naming the file and containing `needle`.
void expect_error(const std::vector<uint8_t>& bytes, StatusCode code, const std::string& needle) {
  const Status s = parse(bytes);
  ASSERT_FALSE(s.ok()) << "accepted; expected error containing '" << needle << "'";
  EXPECT_EQ(s.code(), code) << s.message();
  EXPECT_EQ(s.message().rfind("bad.gguf: ", 0), 0u) << s.message();
  EXPECT_NE(s.message().find(needle), std::string::npos) << s.message();
}

// A small valid file: one u32 key, two 8-float tensors (32 bytes each, so the
// file ends exactly where the last tensor's data ends).
Raw valid_file() {
  Raw r;
  r.header(2, 1).kv_u32("a.b", 7);
  r.tensor("t0", {8}, kF32, 0).tensor("t1", {4, 2}, kF32, 32).pad_to(32);
  for (int i = 0; i < 16; ++i) {
    const float v = static_cast<float>(i);
    r.u32(std::bit_cast<uint32_t>(v));
  }
  return r;
}

TEST(GgufReader, ReadsAValidHandBuiltFile) {
  const Raw r = valid_file();
  auto f = GgufFile::from_memory(r.bytes, "ok.gguf");
  ASSERT_TRUE(f.ok()) << f.status().message();
  EXPECT_EQ((*f)->version(), 3u);
  EXPECT_EQ(*(*f)->get<uint32_t>("a.b"), 7u);
  ASSERT_EQ((*f)->tensors().size(), 2u);
  const GgufTensor* t1 = (*f)->find_tensor("t1");
  ASSERT_NE(t1, nullptr);
  EXPECT_EQ(t1->n_dims, 2u);
  EXPECT_EQ(t1->dims[0], 4);
  EXPECT_EQ(t1->dims[1], 2);
  EXPECT_EQ(t1->n_elements(), 8);
  EXPECT_EQ(t1->n_bytes, 32u);
  float first = 0;
  std::memcpy(&first, t1->data, 4);
  EXPECT_EQ(first, 8.0f);  // t1 starts after t0's 8 floats
  EXPECT_EQ(t1->data + t1->n_bytes, r.bytes.data() + r.bytes.size());
}

TEST(GgufReader, ReadIntoMemoryGivesTheSameFileAsMapping) {
  Raw r = valid_file();
  const std::string path = testing::TempDir() + "/infera_gguf_modes.gguf";
  {
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(r.bytes.data()), static_cast<std::streamsize>(r.bytes.size()));
  }
  auto mapped = GgufFile::open(path, LoadMode::kMap);
  auto copied = GgufFile::open(path, LoadMode::kReadIntoMemory);
  ASSERT_TRUE(mapped.ok()) << mapped.status().message();
  ASSERT_TRUE(copied.ok()) << copied.status().message();
  const GgufTensor* a = (*mapped)->find_tensor("t1");
  const GgufTensor* b = (*copied)->find_tensor("t1");
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  EXPECT_NE(a->data, b->data);  // a private copy, not the mapping
  EXPECT_EQ(std::memcmp(a->data, b->data, a->n_bytes), 0);
  EXPECT_EQ(*(*copied)->get<uint32_t>("a.b"), 7u);
  std::filesystem::remove(path);
  auto missing = GgufFile::open(path, LoadMode::kReadIntoMemory);
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find(path), std::string::npos);
}

TEST(MappedFile, ReadIntoMemoryCopiesLargeOddSizedFilesExactly) {
  const std::string path = testing::TempDir() + "/infera_mapped_odd.bin";
  std::vector<uint8_t> data((size_t{3} << 20) + 12345);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i * 131 + (i >> 12));
  {
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
  }
  auto copy = MappedFile::open(path, LoadMode::kReadIntoMemory);
  ASSERT_TRUE(copy.ok()) << copy.status().message();
  ASSERT_EQ((*copy)->bytes().size(), data.size());
  EXPECT_EQ(std::memcmp((*copy)->bytes().data(), data.data(), data.size()), 0);
  std::filesystem::remove(path);
}

TEST(GgufReader, EveryTruncationIsACorruptErrorNamingTheFile) {
  const Raw r = valid_file();
  for (size_t len = 0; len < r.size(); ++len) {
    std::vector<uint8_t> cut(r.bytes.begin(), r.bytes.begin() + len);
    const Status s = parse(cut);
    ASSERT_FALSE(s.ok()) << "prefix of " << len << " bytes accepted";
    EXPECT_EQ(s.code(), StatusCode::kCorrupt) << len << ": " << s.message();
    const bool says_why = s.message().find("truncated") != std::string::npos ||
                          s.message().find("extends past end of file") != std::string::npos;
    EXPECT_TRUE(says_why) << len << ": " << s.message();
    EXPECT_EQ(s.message().rfind("bad.gguf: ", 0), 0u) << s.message();
  }
}

TEST(GgufReader, TruncationAtEachSectionBoundarySaysWhere) {
  const Raw r = valid_file();
  const auto cut = [&](size_t n) {
    return std::vector<uint8_t>(r.bytes.begin(), r.bytes.begin() + n);
  };
  const size_t kv_end = 24 + (8 + 3) + 4 + 4;
  const size_t t0_end = kv_end + (8 + 2) + 4 + 8 + 4 + 8;
  const size_t t1_end = t0_end + (8 + 2) + 4 + 16 + 4 + 8;
  expect_error(cut(0), StatusCode::kCorrupt, "truncated in the magic number");
  expect_error(cut(4), StatusCode::kCorrupt, "truncated in the version");
  expect_error(cut(8), StatusCode::kCorrupt, "truncated in the tensor count");
  expect_error(cut(16), StatusCode::kCorrupt, "truncated in the metadata count");
  expect_error(cut(24), StatusCode::kCorrupt, "truncated in metadata entry 0 key");
  expect_error(cut(24 + 8), StatusCode::kCorrupt, "metadata entry 0 key");
  expect_error(cut(24 + 11), StatusCode::kCorrupt, "metadata entry 0 ('a.b') type");
  expect_error(cut(24 + 15), StatusCode::kCorrupt, "metadata entry 0 ('a.b')");
  expect_error(cut(kv_end), StatusCode::kCorrupt, "truncated in tensor info 0 name");
  expect_error(cut(t0_end + 8), StatusCode::kCorrupt, "tensor info 1 name");
  expect_error(cut(t0_end + 10), StatusCode::kCorrupt, "tensor 't1' dimension count");
  expect_error(cut(t0_end + 14), StatusCode::kCorrupt, "tensor 't1' dimensions");
  expect_error(cut(t0_end + 30), StatusCode::kCorrupt, "tensor 't1' type");
  expect_error(cut(t0_end + 34), StatusCode::kCorrupt, "tensor 't1' offset");
  expect_error(cut(t1_end), StatusCode::kCorrupt, "truncated before the tensor data");
  expect_error(cut(r.size() - 1), StatusCode::kCorrupt, "tensor 't1' extends past end of file");
}

TEST(GgufReader, RejectsBadMagicAndVersions) {
  Raw bad_magic = valid_file();
  std::memcpy(bad_magic.bytes.data(), "GGML", 4);
  expect_error(bad_magic.bytes, StatusCode::kCorrupt, "not a GGUF file");

  Raw v1;
  v1.header(0, 0, 1);
  expect_error(v1.bytes, StatusCode::kUnsupported, "version 1");
  Raw v4;
  v4.header(0, 0, 4);
  expect_error(v4.bytes, StatusCode::kUnsupported, "unsupported GGUF version 4");
  Raw big_endian;
  big_endian.header(0, 0, 0x03000000);
  expect_error(big_endian.bytes, StatusCode::kUnsupported, "big-endian");

  Raw v2;
  v2.header(0, 1, 2).kv_u32("x", 1);
  EXPECT_TRUE(parse(v2.bytes).ok()) << "GGUF v2 has the same little-endian layout as v3";
}

TEST(GgufReader, RejectsAbsurdCountsWithoutAllocating) {
  Raw kvs;
  kvs.header(0, uint64_t{1} << 60);
  expect_error(kvs.bytes, StatusCode::kCorrupt, "metadata count 1152921504606846976 cannot fit");
  Raw tensors;
  tensors.header(uint64_t{1} << 62, 0);
  expect_error(tensors.bytes, StatusCode::kCorrupt, "tensor count 4611686018427387904 cannot fit");
  Raw array;
  array.header(0, 1).str("arr").u32(static_cast<uint32_t>(GgufType::kArray));
  array.u32(static_cast<uint32_t>(GgufType::kUint64)).u64(uint64_t{1} << 61).zeros(64);
  expect_error(array.bytes, StatusCode::kCorrupt, "claims 2305843009213693952 array elements");
  Raw strings;
  strings.header(0, 1).str("arr").u32(static_cast<uint32_t>(GgufType::kArray));
  strings.u32(static_cast<uint32_t>(GgufType::kString)).u64(1000).str("only one");
  expect_error(strings.bytes, StatusCode::kCorrupt, "claims 1000 array elements");
}

TEST(GgufReader, RejectsBadStringsAndValues) {
  Raw key_len;
  key_len.header(0, 1).u64(uint64_t{1} << 63).zeros(16);
  expect_error(key_len.bytes, StatusCode::kCorrupt, "truncated in metadata entry 0 key");
  Raw value_len;
  value_len.header(0, 1).str("s").u32(static_cast<uint32_t>(GgufType::kString)).u64(~uint64_t{0});
  expect_error(value_len.bytes, StatusCode::kCorrupt, "truncated in metadata entry 0 ('s')");
  Raw type;
  type.header(0, 1).str("k").u32(99).u32(0);
  expect_error(type.bytes, StatusCode::kCorrupt, "unknown value type 99");
  Raw elem_type;
  elem_type.header(0, 1).str("k").u32(static_cast<uint32_t>(GgufType::kArray)).u32(13).u64(0);
  expect_error(elem_type.bytes, StatusCode::kCorrupt, "array of unknown type 13");
  Raw nested;
  nested.header(0, 1).str("k").u32(static_cast<uint32_t>(GgufType::kArray));
  nested.u32(static_cast<uint32_t>(GgufType::kArray)).u64(0);
  expect_error(nested.bytes, StatusCode::kUnsupported, "array of arrays");
  Raw boolean;
  boolean.header(0, 1).str("b").u32(static_cast<uint32_t>(GgufType::kBool)).u8(2);
  expect_error(boolean.bytes, StatusCode::kCorrupt, "bool with value 2");
  Raw dup;
  dup.header(0, 2).kv_u32("k", 1).kv_u32("k", 2);
  expect_error(dup.bytes, StatusCode::kCorrupt, "duplicate metadata key 'k'");
  Raw align;
  align.header(0, 1).kv_u32("general.alignment", 24);
  expect_error(align.bytes, StatusCode::kCorrupt, "general.alignment 24 is not a power of two");
  Raw align_type;
  align_type.header(0, 1)
      .str("general.alignment")
      .u32(static_cast<uint32_t>(GgufType::kUint64))
      .u64(32);
  expect_error(align_type.bytes, StatusCode::kCorrupt, "general.alignment is u64, expected u32");
}

// One tensor file with the given info; data section of `data_bytes` zeros.
std::vector<uint8_t> one_tensor(std::vector<uint64_t> dims, uint32_t type, uint64_t offset,
                                size_t data_bytes = 64) {
  Raw r;
  r.header(1, 0).tensor("w", std::move(dims), type, offset).pad_to(32).zeros(data_bytes);
  return r.bytes;
}

TEST(GgufReader, RejectsBadTensorInfos) {
  expect_error(one_tensor({8}, 4, 0), StatusCode::kUnsupported,
               "tensor 'w' has unknown ggml type 4");
  expect_error(one_tensor({8}, 99, 0), StatusCode::kUnsupported, "unknown ggml type 99");
  expect_error(one_tensor({}, kF32, 0), StatusCode::kCorrupt, "has 0 dimensions");
  expect_error(one_tensor({1, 1, 1, 1, 1}, kF32, 0), StatusCode::kCorrupt, "has 5 dimensions");
  expect_error(one_tensor({8, 0}, kF32, 0), StatusCode::kCorrupt, "dimension 1 is 0");
  expect_error(one_tensor({uint64_t{1} << 63}, kF32, 0), StatusCode::kCorrupt, "must be positive");
  expect_error(one_tensor({uint64_t{1} << 32, uint64_t{1} << 32}, kF32, 0), StatusCode::kCorrupt,
               "too many elements");
  expect_error(one_tensor({16}, static_cast<uint32_t>(GgmlType::kQ4_0), 0), StatusCode::kCorrupt,
               "not a multiple of the Q4_0 block size 32");
  expect_error(one_tensor({8}, kF32, 16), StatusCode::kCorrupt,
               "offset 16 is not a multiple of the alignment 32");
  expect_error(one_tensor({8}, kF32, 64), StatusCode::kCorrupt,
               "tensor 'w' extends past end of file");
  expect_error(one_tensor({8}, kF32, uint64_t{1} << 62), StatusCode::kCorrupt,
               "extends past end of file");
  expect_error(one_tensor({uint64_t{1} << 40}, kF32, 0), StatusCode::kCorrupt,
               "extends past end of file");

  Raw overlap;
  overlap.header(2, 0).tensor("a", {16}, kF32, 0).tensor("b", {8}, kF32, 32).pad_to(32).zeros(96);
  expect_error(overlap.bytes, StatusCode::kCorrupt,
               "tensors 'a' (bytes 0..64) and 'b' (from 32) overlap");
  Raw dup;
  dup.header(2, 0).tensor("a", {8}, kF32, 0).tensor("a", {8}, kF32, 32).pad_to(32).zeros(64);
  expect_error(dup.bytes, StatusCode::kCorrupt, "duplicate tensor name 'a'");
}

TEST(GgufReader, HonoursGeneralAlignment) {
  Raw r;
  r.header(1, 1).kv_u32("general.alignment", 64).tensor("w", {8}, kF32, 0).pad_to(64).zeros(32);
  auto f = GgufFile::from_memory(r.bytes, "a.gguf");
  ASSERT_TRUE(f.ok()) << f.status().message();
  EXPECT_EQ((*f)->alignment(), 64u);
  EXPECT_EQ((*f)->data_offset() % 64, 0u);
  // The same tensor at an offset aligned to 32 but not 64 is rejected.
  Raw bad;
  bad.header(1, 1).kv_u32("general.alignment", 64).tensor("w", {8}, kF32, 32).pad_to(64).zeros(128);
  expect_error(bad.bytes, StatusCode::kCorrupt, "not a multiple of the alignment 64");
}

TEST(GgufReader, OpenReportsMissingFilesAndNamesThePath) {
  auto missing = GgufFile::open("/nonexistent/model.gguf");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("/nonexistent/model.gguf"), std::string::npos);

  const std::string path = temp_path("truncated.gguf");
  const Raw r = valid_file();
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(r.bytes.data()), 40);
  auto f = GgufFile::open(path);
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.status().message().rfind(path + ": ", 0), 0u) << f.status().message();
  std::filesystem::remove(path);
}

TEST(GgufRoundTrip, WriterOutputReadsBackExactly) {
  GgufWriter w;
  w.set_string("general.architecture", "llama");
  w.set<uint8_t>("k.u8", 200);
  w.set<int8_t>("k.i8", -100);
  w.set<uint16_t>("k.u16", 60000);
  w.set<int16_t>("k.i16", -30000);
  w.set<uint32_t>("k.u32", 4000000000u);
  w.set<int32_t>("k.i32", -2000000000);
  w.set<uint64_t>("k.u64", uint64_t{1} << 40);
  w.set<int64_t>("k.i64", -(int64_t{1} << 40));
  w.set<float>("k.f32", 1.5f);
  w.set<double>("k.f64", -2.25);
  w.set<bool>("k.bool", true);
  const std::vector<float> floats = {0.5f, -1.0f, 3.0f};
  w.set_array<float>("k.floats", floats);
  const std::vector<int32_t> ints = {1, -2, 3};
  w.set_array<int32_t>("k.ints", ints);
  const std::vector<std::string> strs = {"a", "", "ünïcode"};
  w.set_string_array("k.strs", strs);
  w.set<uint32_t>("k.replaced", 1);
  w.set<uint32_t>("k.replaced", 2);
  w.set_alignment(64);

  std::vector<uint8_t> f32_bytes(4 * 5 * 3);
  for (size_t i = 0; i < f32_bytes.size(); ++i) f32_bytes[i] = static_cast<uint8_t>(i);
  const std::vector<int64_t> f32_dims = {5, 3};
  ASSERT_TRUE(w.add_tensor("a.f32", GgmlType::kF32, f32_dims, f32_bytes).ok());
  const std::vector<int64_t> q_dims = {64, 2};
  ASSERT_TRUE(w.add_tensor("b.q4", GgmlType::kQ4_0, q_dims, [](std::span<uint8_t> out) {
                 for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<uint8_t>(255 - i);
               }).ok());
  const std::vector<int64_t> q8_dims = {32};
  ASSERT_TRUE(w.add_tensor("c.q8", GgmlType::kQ8_0, q8_dims, std::vector<uint8_t>(34, 7)).ok());

  const std::string path = temp_path("roundtrip.gguf");
  ASSERT_TRUE(w.write(path).ok());
  auto f = GgufFile::open(path);
  ASSERT_TRUE(f.ok()) << f.status().message();
  const GgufFile& g = **f;
  EXPECT_EQ(g.version(), 3u);
  EXPECT_EQ(g.alignment(), 64u);
  EXPECT_EQ(*g.get<std::string_view>("general.architecture"), "llama");
  EXPECT_EQ(*g.get<uint8_t>("k.u8"), 200);
  EXPECT_EQ(*g.get<int8_t>("k.i8"), -100);
  EXPECT_EQ(*g.get<uint16_t>("k.u16"), 60000);
  EXPECT_EQ(*g.get<int16_t>("k.i16"), -30000);
  EXPECT_EQ(*g.get<uint32_t>("k.u32"), 4000000000u);
  EXPECT_EQ(*g.get<int32_t>("k.i32"), -2000000000);
  EXPECT_EQ(*g.get<uint64_t>("k.u64"), uint64_t{1} << 40);
  EXPECT_EQ(*g.get<int64_t>("k.i64"), -(int64_t{1} << 40));
  EXPECT_EQ(*g.get<float>("k.f32"), 1.5f);
  EXPECT_EQ(*g.get<double>("k.f64"), -2.25);
  EXPECT_EQ(*g.get<bool>("k.bool"), true);
  EXPECT_EQ(*g.get_array<float>("k.floats"), floats);
  EXPECT_EQ(*g.get_array<int32_t>("k.ints"), ints);
  const std::vector<std::string_view> want_strs(strs.begin(), strs.end());
  EXPECT_EQ(*g.get_array<std::string_view>("k.strs"), want_strs);
  EXPECT_EQ(*g.get<uint32_t>("k.replaced"), 2u);
  EXPECT_EQ(*g.get_integer("k.u32"), 4000000000);
  EXPECT_EQ(*g.get_or<uint32_t>("k.absent", 9), 9u);

  ASSERT_EQ(g.tensors().size(), 3u);
  for (const GgufTensor& t : g.tensors()) EXPECT_EQ(t.offset % 64, 0u) << t.name;
  const GgufTensor* a = g.find_tensor("a.f32");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->type, GgmlType::kF32);
  EXPECT_EQ(std::vector<uint8_t>(a->data, a->data + a->n_bytes), f32_bytes);
  const GgufTensor* b = g.find_tensor("b.q4");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->n_bytes, 2u * 2 * 18);
  EXPECT_EQ(b->data[0], 255);
  EXPECT_EQ(b->data[71], 255 - 71);
  const GgufTensor* c = g.find_tensor("c.q8");
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->n_bytes, 34u);
  EXPECT_EQ(c->data[33], 7);

  // The in-memory image is the same file.
  const std::vector<uint8_t> image = w.to_bytes();
  EXPECT_EQ(image.size(), g.file_size());
  auto mem = GgufFile::from_memory(image, "mem");
  ASSERT_TRUE(mem.ok()) << mem.status().message();
  for (const GgufTensor& t : (*mem)->tensors()) {
    EXPECT_EQ(t.data, image.data() + (*mem)->data_offset() + t.offset)
        << "zero-copy view of " << t.name;
  }
  std::filesystem::remove(path);
}

TEST(GgufRoundTrip, TypedGettersReportMissingKeysAndWrongTypes) {
  GgufWriter w;
  w.set<uint32_t>("n", 3);
  const std::vector<uint8_t> image = w.to_bytes();
  auto f = GgufFile::from_memory(image, "m.gguf");
  ASSERT_TRUE(f.ok());
  auto missing = (*f)->get<uint32_t>("absent");
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_EQ(missing.status().message(), "m.gguf: metadata key 'absent' not found");
  auto wrong = (*f)->get<std::string_view>("n");
  EXPECT_EQ(wrong.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(wrong.status().message(), "m.gguf: metadata key 'n' is u32, expected string");
  auto wrong_array = (*f)->get_array<float>("n");
  EXPECT_FALSE(wrong_array.ok());
}

TEST(GgufWriter, RejectsTensorsTheReaderWouldRefuse) {
  GgufWriter w;
  const std::vector<int64_t> d8 = {8};
  const std::vector<uint8_t> b32(32);
  EXPECT_TRUE(w.add_tensor("ok", GgmlType::kF32, d8, b32).ok());
  EXPECT_FALSE(w.add_tensor("ok", GgmlType::kF32, d8, b32).ok());  // duplicate
  EXPECT_FALSE(w.add_tensor("", GgmlType::kF32, d8, b32).ok());
  EXPECT_FALSE(w.add_tensor(std::string(64, 'x'), GgmlType::kF32, d8, b32).ok());
  EXPECT_FALSE(w.add_tensor("short", GgmlType::kF32, d8, std::vector<uint8_t>(31)).ok());
  const std::vector<int64_t> zero = {8, 0};
  EXPECT_FALSE(w.add_tensor("zero", GgmlType::kF32, zero, b32).ok());
  const std::vector<int64_t> five = {1, 1, 1, 1, 1};
  EXPECT_FALSE(w.add_tensor("five", GgmlType::kF32, five, std::vector<uint8_t>(4)).ok());
  const std::vector<int64_t> d16 = {16};
  const Status s = w.add_tensor("q", GgmlType::kQ4_0, d16, std::vector<uint8_t>(9));
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("Q4_0"), std::string::npos) << s.message();
  EXPECT_FALSE(w.write("/nonexistent/dir/x.gguf").ok());
}

TEST(GgufTypes, BlockSizesMatchGgml) {
  EXPECT_EQ(ggml_type_info(GgmlType::kF16).bytes_per_block, 2u);
  EXPECT_EQ(ggml_type_info(GgmlType::kBF16).bytes_per_block, 2u);
  EXPECT_EQ(ggml_type_info(GgmlType::kQ4_1).bytes_per_block, 20u);
  EXPECT_EQ(ggml_type_info(GgmlType::kQ5_0).bytes_per_block, 22u);
  EXPECT_EQ(ggml_type_info(GgmlType::kQ5_1).bytes_per_block, 24u);
  EXPECT_EQ(ggml_type_info(GgmlType::kQ8_1).bytes_per_block, 36u);
  EXPECT_EQ(ggml_type_info(GgmlType::kQ2_K).bytes_per_block, 84u);
  EXPECT_EQ(ggml_type_info(GgmlType::kQ3_K).bytes_per_block, 110u);
  EXPECT_EQ(ggml_type_info(GgmlType::kQ5_K).bytes_per_block, 176u);
  EXPECT_EQ(ggml_type_info(GgmlType::kQ4_K).block_size, 256u);
  EXPECT_EQ(ggml_type_info(uint32_t{4}), nullptr);
  EXPECT_EQ(ggml_type_info(uint32_t{31}), nullptr);
  EXPECT_EQ(*ggml_row_bytes(GgmlType::kQ4_0, 4096), 4096u / 32 * 18);
  EXPECT_FALSE(ggml_row_bytes(GgmlType::kQ4_0, 4016).has_value());
}

TEST(GgufSharedModels, ReadsLlama2TinyRandom) {
  const std::string path = kModels + "/llama-2-tiny-random.gguf";
  if (!std::filesystem::exists(path))
    GTEST_SKIP() << path << " not found (../shared/models absent)";
  auto f = GgufFile::open(path);
  ASSERT_TRUE(f.ok()) << f.status().message();
  const GgufFile& g = **f;
  EXPECT_EQ(g.version(), 3u);
  EXPECT_EQ(*g.get<std::string_view>("general.architecture"), "llama");
  EXPECT_EQ(*g.get<uint32_t>("llama.embedding_length"), 8u);
  EXPECT_EQ(*g.get_integer("llama.block_count"), 1);
  EXPECT_EQ(g.get_array<std::string_view>("tokenizer.ggml.tokens")->size(), 32000u);
  EXPECT_EQ(g.get_array<float>("tokenizer.ggml.scores")->size(), 32000u);
  EXPECT_EQ(g.tensors().size(), 12u);
  const GgufTensor* emb = g.find_tensor("token_embd.weight");
  ASSERT_NE(emb, nullptr);
  EXPECT_EQ(emb->type, GgmlType::kF16);
  EXPECT_EQ(emb->dims[0], 8);
  EXPECT_EQ(emb->dims[1], 32000);
  EXPECT_EQ(emb->n_bytes, 8u * 32000 * 2);
  for (const GgufTensor& t : g.tensors()) {
    EXPECT_EQ(reinterpret_cast<uintptr_t>(t.data) % 32, 0u) << t.name;  // mmap is page-aligned
    EXPECT_LE(t.data + t.n_bytes, t.data - t.offset - g.data_offset() + g.file_size());
  }
}

TEST(GgufSharedModels, ReadsStories260KWeightsAsFiniteFloats) {
  const std::string path = kModels + "/stories260K.gguf";
  if (!std::filesystem::exists(path))
    GTEST_SKIP() << path << " not found (../shared/models absent)";
  auto f = GgufFile::open(path);
  ASSERT_TRUE(f.ok()) << f.status().message();
  EXPECT_EQ((*f)->tensors().size(), 48u);
  EXPECT_EQ(*(*f)->get<uint32_t>("llama.attention.head_count_kv"), 4u);
  const GgufTensor* norm = (*f)->find_tensor("output_norm.weight");
  ASSERT_NE(norm, nullptr);
  ASSERT_EQ(norm->type, GgmlType::kF32);
  ASSERT_EQ(norm->n_elements(), 64);
  double sum = 0;
  for (int i = 0; i < 64; ++i) {
    float v = 0;
    std::memcpy(&v, norm->data + 4 * i, 4);
    ASSERT_TRUE(std::isfinite(v));
    sum += std::fabs(v);
  }
  EXPECT_GT(sum, 0.0);  // trained weights, not zeros
}

TEST(GgufSharedModels, EveryVocabFileOpensAndCopiesIntoTheWriter) {
  int seen = 0;
  for (const char* name :
       {"ggml-vocab-llama-spm.gguf", "ggml-vocab-phi-3.gguf", "ggml-vocab-gpt-2.gguf",
        "ggml-vocab-deepseek-coder.gguf", "ggml-vocab-falcon.gguf"}) {
    const std::string path = kModels + "/" + name;
    if (!std::filesystem::exists(path)) continue;
    ++seen;
    auto src = GgufFile::open(path);
    ASSERT_TRUE(src.ok()) << src.status().message();
    EXPECT_TRUE((*src)->tensors().empty());
    GgufWriter w;
    w.copy_metadata(**src, [](std::string_view key) { return key.starts_with("tokenizer."); });
    const std::vector<uint8_t> image = w.to_bytes();
    auto copy = GgufFile::from_memory(image, "copy.gguf");
    ASSERT_TRUE(copy.ok()) << copy.status().message();
    EXPECT_FALSE((*copy)->has("general.architecture"));
    EXPECT_EQ(*(*copy)->get_array<std::string_view>("tokenizer.ggml.tokens"),
              *(*src)->get_array<std::string_view>("tokenizer.ggml.tokens"))
        << name;
  }
  if (seen == 0) GTEST_SKIP() << kModels << " has no vocab files (../shared/models absent)";
}

}  // namespace
}  // namespace infera::engine
