// A random-weight BERT embedding model of a realistic shape, for bench/embeddings.
// By default the shape of bge-small-en-v1.5 (dim 384, 12 layers, 12 heads, FFN 1536,
// context 512, mean pooling); the metadata and tensor names are those of the shared
// tiny-bert-bge.gguf (which llama.cpp and infera both load), with the shape keys
// replaced, and its tokenizer.ggml.* entries (the real bge WordPiece vocabulary)
// copied byte for byte, so both servers tokenize real text the same way.
//
//   build/bench/bench_embeddings_model OUT.gguf [--layers 12] [--dim 384] [--heads 12]
//       [--ffn 1536] [--ctx 512] [--type f16|f32] [--seed 1]
//       [--vocab ../shared/models/tiny-bert-bge.gguf]
//
// 2-D tensors are written as --type (F16 by default, as llama.cpp's converter writes
// bge-small), vectors (biases, LayerNorm weights) and the token-type table as F32. The weights are uniform with
// unit-variance-preserving amplitudes (sqrt(3 / fan_in)), LayerNorm weights near 1, so
// activations and attention stay in a realistic range through the layers.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "engine/ggml_types.h"
#include "engine/gguf.h"
#include "engine/gguf_writer.h"
#include "engine/kernels/kernels.h"
#include "engine/synth.h"

namespace {

using infera::Status;
using infera::engine::GgmlType;
using infera::engine::GgufFile;
using infera::engine::GgufWriter;

// SplitMix64: one reproducible stream per (tensor, row).
struct SplitMix {
  uint64_t state;
  uint64_t next() {
    uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  float symmetric() { return static_cast<float>(next() >> 40) * (2.0f / 16777216.0f) - 1.0f; }
};

struct Options {
  std::string out;
  std::string vocab = "../shared/models/tiny-bert-bge.gguf";
  int layers = 12, dim = 384, heads = 12, ffn = 1536, ctx = 512;
  GgmlType type = GgmlType::kF16;
  uint64_t seed = 1;
};

// kTable: embedding rows, unit amplitude (LayerNorm follows); kMatrix: amplitude
// sqrt(3 / row length), so a product keeps its input's variance.
enum class Fill { kTable, kMatrix, kNormWeight, kBias };

struct Plan {
  std::string name;
  int cols;  // dims[0], the row length
  int rows;  // 1 for vectors
  Fill fill;
};

std::vector<Plan> plan(const Options& o, int n_vocab, int n_types) {
  std::vector<Plan> p = {
      {"token_embd.weight", o.dim, n_vocab, Fill::kTable},
      {"token_types.weight", o.dim, n_types, Fill::kTable},
      {"position_embd.weight", o.dim, o.ctx, Fill::kTable},
      {"token_embd_norm.weight", o.dim, 1, Fill::kNormWeight},
      {"token_embd_norm.bias", o.dim, 1, Fill::kBias},
  };
  for (int l = 0; l < o.layers; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    for (const char* m : {"attn_q", "attn_k", "attn_v", "attn_output"}) {
      p.push_back({b + m + ".weight", o.dim, o.dim, Fill::kMatrix});
      p.push_back({b + m + ".bias", o.dim, 1, Fill::kBias});
    }
    p.push_back({b + "attn_output_norm.weight", o.dim, 1, Fill::kNormWeight});
    p.push_back({b + "attn_output_norm.bias", o.dim, 1, Fill::kBias});
    p.push_back({b + "ffn_up.weight", o.dim, o.ffn, Fill::kMatrix});
    p.push_back({b + "ffn_up.bias", o.ffn, 1, Fill::kBias});
    p.push_back({b + "ffn_down.weight", o.ffn, o.dim, Fill::kMatrix});
    p.push_back({b + "ffn_down.bias", o.dim, 1, Fill::kBias});
    p.push_back({b + "layer_output_norm.weight", o.dim, 1, Fill::kNormWeight});
    p.push_back({b + "layer_output_norm.bias", o.dim, 1, Fill::kBias});
  }
  return p;
}

[[noreturn]] void usage(const char* msg) {
  std::fprintf(stderr,
               "%s\nusage: bench_embeddings_model OUT.gguf [--layers N] [--dim D] [--heads H]"
               " [--ffn F] [--ctx C] [--type f16|f32] [--seed S] [--vocab FILE]\n",
               msg);
  std::exit(2);
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (!a.starts_with("--")) {
      if (!o.out.empty()) usage("more than one output file");
      o.out = argv[i];
      continue;
    }
    if (i + 1 >= argc) usage("missing value");
    const char* v = argv[++i];
    auto positive = [&](int& dst) {
      dst = std::atoi(v);
      if (dst <= 0) usage("dimensions must be positive");
    };
    if (a == "--layers") positive(o.layers);
    else if (a == "--dim") positive(o.dim);
    else if (a == "--heads") positive(o.heads);
    else if (a == "--ffn") positive(o.ffn);
    else if (a == "--ctx") positive(o.ctx);
    else if (a == "--seed") o.seed = std::strtoull(v, nullptr, 10);
    else if (a == "--vocab") o.vocab = v;
    else if (a == "--type") {
      if (std::string_view(v) == "f16") o.type = GgmlType::kF16;
      else if (std::string_view(v) == "f32") o.type = GgmlType::kF32;
      else usage("--type is f16 or f32");
    } else {
      usage(("unknown option " + std::string(a)).c_str());
    }
  }
  if (o.out.empty()) usage("no output file");
  if (o.dim % o.heads != 0) usage("dim must be a multiple of heads");
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  auto src = GgufFile::open(o.vocab);
  if (!src.ok()) {
    std::fprintf(stderr, "%s\n", src.status().message().c_str());
    return 1;
  }
  const GgufFile& v = **src;
  auto tokens = v.find("tokenizer.ggml.tokens");
  if (tokens == nullptr) {
    std::fprintf(stderr, "%s has no tokenizer.ggml.tokens\n", o.vocab.c_str());
    return 1;
  }
  const int n_vocab = static_cast<int>(tokens->array_count);
  auto types = v.get_integer("tokenizer.ggml.token_type_count");
  const int n_types = types.ok() ? static_cast<int>(*types) : 2;

  GgufWriter w;
  // The source's metadata in its order (general.*, bert.*, tokenizer.*), then the shape.
  w.copy_metadata(v);
  auto arch_name = v.get<std::string_view>("general.architecture");
  const std::string arch = arch_name.ok() ? std::string(*arch_name) : std::string("bert");
  char name[160];
  std::snprintf(name, sizeof name, "bge-small-shaped (random weights): dim %d, %d layers, %d heads, FFN %d",
                o.dim, o.layers, o.heads, o.ffn);
  w.set_string("general.name", name);
  w.set<uint32_t>(arch + ".context_length", static_cast<uint32_t>(o.ctx));
  w.set<uint32_t>(arch + ".embedding_length", static_cast<uint32_t>(o.dim));
  w.set<uint32_t>(arch + ".feed_forward_length", static_cast<uint32_t>(o.ffn));
  w.set<uint32_t>(arch + ".block_count", static_cast<uint32_t>(o.layers));
  w.set<uint32_t>(arch + ".attention.head_count", static_cast<uint32_t>(o.heads));
  w.set<uint32_t>(arch + ".pooling_type", 1);  // mean, as bge-small's GGUF
  w.set<uint32_t>("general.file_type", infera::engine::llama_file_type_of(o.type));

  const std::vector<Plan> tensors = plan(o, n_vocab, n_types);
  for (size_t index = 0; index < tensors.size(); ++index) {
    const Plan& t = tensors[index];
    // llama.cpp adds the token-type row to F32 activations with a plain ggml_add,
    // which has no F32 + F16 kernel: its converter keeps that table F32, as here.
    const GgmlType type = t.rows > 1 && t.name != "token_types.weight" ? o.type : GgmlType::kF32;
    std::vector<int64_t> dims = {t.cols};
    if (t.rows > 1) dims.push_back(t.rows);
    const uint64_t seed = o.seed;
    Status st = w.add_tensor(t.name, type, dims, [t, type, seed, index](std::span<uint8_t> out) {
      const size_t row_bytes = out.size() / static_cast<size_t>(t.rows);
      const float amp = std::sqrt(3.0f / static_cast<float>(t.cols));
      std::vector<float> row(static_cast<size_t>(t.cols));
      for (int r = 0; r < t.rows; ++r) {
        SplitMix rng{(seed * 0x100000001b3ull) ^ (uint64_t{index} << 32) ^ static_cast<uint64_t>(r)};
        (void)rng.next();
        for (float& x : row) {
          switch (t.fill) {
            case Fill::kTable: x = rng.symmetric(); break;
            case Fill::kMatrix: x = amp * rng.symmetric(); break;
            case Fill::kNormWeight: x = 1.0f + 0.2f * rng.symmetric(); break;
            case Fill::kBias: x = 0.1f * rng.symmetric(); break;
          }
        }
        (void)infera::engine::kernels::quantize_row(type, row.data(), out.data() + r * row_bytes, t.cols);
      }
    });
    if (!st.ok()) {
      std::fprintf(stderr, "%s\n", st.message().c_str());
      return 1;
    }
  }
  if (Status st = w.write(o.out); !st.ok()) {
    std::fprintf(stderr, "%s\n", st.message().c_str());
    return 1;
  }
  std::printf("wrote %s: %s, vocabulary %d from %s, %zu tensors\n", o.out.c_str(), name, n_vocab,
              o.vocab.c_str(), tensors.size());
  return 0;
}
