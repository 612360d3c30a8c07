// libFuzzer target for the GGUF reader (and the tokenizer built from what it
// reads): any input must either parse or fail with a Status, never crash, hang or
// allocate without bound. Build and run: docs/FUZZING.md.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "engine/gguf.h"
#include "engine/tokenizer.h"

namespace {

using infera::engine::GgufFile;
using infera::engine::GgufType;

// Touches every view the reader hands out, so ASan sees any out-of-bounds one.
uint64_t touch(const GgufFile& f) {
  uint64_t sum = 0;
  for (const auto& kv : f.metadata()) {
    sum += kv.key.size() + kv.payload.size();
    if (!kv.payload.empty()) sum += kv.payload.front() + kv.payload.back();
    if (kv.type == GgufType::kArray && kv.array_type == GgufType::kString) {
      auto strings = f.get_array<std::string_view>(kv.key);
      if (strings.ok()) {
        for (std::string_view s : *strings) sum += s.empty() ? 0 : static_cast<uint8_t>(s.back());
      }
    } else if (kv.type == GgufType::kString) {
      sum += f.get<std::string_view>(kv.key)->size();
    } else if (kv.type != GgufType::kArray) {
      auto v = f.get_integer(kv.key);
      if (v.ok()) sum += static_cast<uint64_t>(*v);
    }
  }
  for (const auto& t : f.tensors()) {
    sum += t.data[0] + t.data[t.n_bytes - 1];
    sum += f.find_tensor(t.name) == &t ? 1 : 0;
  }
  return sum;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto file = GgufFile::from_memory(std::span<const uint8_t>(data, size), "fuzz.gguf");
  if (!file.ok()) return 0;
  volatile uint64_t sink = touch(**file);
  (void)sink;
  auto tokenizer = infera::engine::Tokenizer::from_gguf(**file);
  if (tokenizer.ok()) {
    const auto ids =
        (*tokenizer)->encode("Hello world, 123 'll \xE2\x96\x81 \xF0\x9F\xA6\x99 <s>", true, true);
    const std::string text = (*tokenizer)->decode(ids, false);
    sink = text.size();
  }
  return 0;
}
