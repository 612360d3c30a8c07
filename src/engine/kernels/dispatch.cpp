// CPU detection, building the tables, choosing the active one; and the type-generic
// helpers (rope angles) that are not hot enough to dispatch.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "engine/kernels/tables.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
#endif
#if defined(__aarch64__)
#include <sys/auxv.h>
#endif

namespace infera::engine::kernels {
namespace {

#if defined(__x86_64__) || defined(_M_X64)
struct X86Features {
  bool avx2 = false;    // AVX, AVX2, FMA, F16C and the OS saves YMM state
  bool avx512 = false;  // F, BW, VL, DQ, VNNI, BF16 and the OS saves ZMM state
};

X86Features detect_x86() {
  X86Features f;
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (__get_cpuid(1, &a, &b, &c, &d) == 0) return f;
  const bool fma = (c >> 12) & 1, osxsave = (c >> 27) & 1, avx = (c >> 28) & 1,
             f16c = (c >> 29) & 1;
  if (!(fma && osxsave && avx && f16c)) return f;
  unsigned xcr0_lo = 0, xcr0_hi = 0;
  __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
  if ((xcr0_lo & 0x6) != 0x6) return f;  // XMM and YMM state
  if (__get_cpuid_count(7, 0, &a, &b, &c, &d) == 0) return f;
  f.avx2 = (b >> 5) & 1;
  const bool avx512f = (b >> 16) & 1, dq = (b >> 17) & 1, bw = (b >> 30) & 1, vl = (b >> 31) & 1;
  const bool vnni = (c >> 11) & 1;
  const bool zmm_state = (xcr0_lo & 0xe0) == 0xe0;  // opmask, ZMM0-15 upper, ZMM16-31
  unsigned a1 = 0, b1 = 0, c1 = 0, d1 = 0;
  const bool bf16 = __get_cpuid_count(7, 1, &a1, &b1, &c1, &d1) != 0 && ((a1 >> 5) & 1);
  f.avx512 = f.avx2 && avx512f && dq && bw && vl && vnni && bf16 && zmm_state;
  return f;
}
#endif

#if defined(__aarch64__)
// Every AArch64 CPU has Advanced SIMD (the base "neon" table needs nothing more); the
// dot-product extension (SDOT, ARMv8.2-A optional, ARMv8.4-A mandatory) is reported by
// the kernel in AT_HWCAP.
bool detect_arm_dotprod() { return (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0; }
#endif

struct Tables {
  Kernels scalar{};
  Kernels avx2{};
  Kernels avx512{};
  bool has_avx2 = false;
  bool has_avx512 = false;
  // The same in llama.cpp's summation orders (see ggml_order).
  Kernels scalar_ggml{};
  Kernels avx2_ggml{};
  Kernels avx512_ggml{};
  // ARM
  Kernels neon{};
  Kernels neondot{};
  bool has_neon = false;
  bool has_neondot = false;
};

const Tables& tables() {
  static const Tables t = [] {
    Tables r;
    fill_scalar_matmul(r.scalar);
    fill_scalar_ops(r.scalar);
    r.scalar.name = "scalar";
    r.scalar.level = Level::kScalar;
    r.scalar_ggml = r.scalar;
    fill_scalar_ggml_order(r.scalar_ggml);
    r.scalar_ggml.name = "scalar-ggml";
#if defined(__x86_64__) || defined(_M_X64)
    const X86Features f = detect_x86();
    r.has_avx2 = f.avx2;
    r.has_avx512 = f.avx512;
    r.avx2 = r.scalar;
    fill_avx2(r.avx2);
    fill_avx2_kquants(r.avx2);
    fill_avx2_q4_1_q5(r.avx2);
    r.avx2.matmul_f16_kmajor = nullptr;  // 8 lanes: no faster than its matmul_f16
    r.avx2.matmul_f32_kmajor = nullptr;
    r.avx2.name = "avx2";
    r.avx2.level = Level::kAvx2;
    r.avx512 = r.avx2;
    fill_avx512(r.avx512);
    fill_avx512_kquants(r.avx512);
    fill_avx512_kmajor(r.avx512);
    r.avx512.matmul_q4_1 = matmul_q4_1_avx512;  // x86/matmul_lanes_avx512.cpp
    r.avx512.matmul_q5_0 = matmul_q5_0_avx512;
    r.avx512.matmul_q5_1 = matmul_q5_1_avx512;
    r.avx512.name = "avx512";
    r.avx512.level = Level::kAvx512;
    // ggml's orders: its Q6_K dot product is the AVX2 table's; no repacked layouts
    // (their lane orders are infera's own).
    auto ggml_from = [&](const Kernels& base, const char* name) {
      Kernels g = base;
      fill_avx2_ggml_order(g);
      g.matmul_q6_k = r.avx2.matmul_q6_k;
      g.rope = r.scalar_ggml.rope;
      g.packed_tile_bytes = nullptr;
      g.pack_tiles = nullptr;
      g.packed_matmul = nullptr;
      g.name = name;
      return g;
    };
    r.avx2_ggml = ggml_from(r.avx2, "avx2-ggml");
    r.avx2_ggml.dot_f16_rows = dot_f16_rows_ggml8;
    r.avx512_ggml = ggml_from(r.avx512, "avx512-ggml");
    r.avx512_ggml.dot_f16_rows = dot_f16_rows_ggml16;
    fill_avx512_ggml_order(r.avx512_ggml);
#endif
#if defined(__aarch64__)
    r.has_neon = true;
    r.has_neondot = detect_arm_dotprod();
    r.neon = r.scalar;
    r.neon.matmul_f16_kmajor = nullptr;
    r.neon.matmul_f32_kmajor = nullptr;
    fill_neon(r.neon);
    r.neon.name = "neon";
    r.neon.level = Level::kNeon;
    r.neondot = r.neon;
    fill_neondot(r.neondot);
    r.neondot.name = "neondot";
    r.neondot.level = Level::kNeonDot;
#endif
    return r;
  }();
  return t;
}

std::atomic<const Kernels*> g_active{nullptr};

const Kernels& choose() {
  if (const char* forced = std::getenv("INFERA_KERNELS")) {
    if (const Kernels* k = by_name(forced)) return *k;
  }
  return *by_level(detected_level());
}

}  // namespace

Level detected_level() {
  const Tables& t = tables();
  if (t.has_avx512) return Level::kAvx512;
  if (t.has_avx2) return Level::kAvx2;
  if (t.has_neondot) return Level::kNeonDot;
  if (t.has_neon) return Level::kNeon;
  return Level::kScalar;
}

const Kernels* by_level(Level level) {
  const Tables& t = tables();
  switch (level) {
    case Level::kScalar:
      return &t.scalar;
    case Level::kAvx2:
      return t.has_avx2 ? &t.avx2 : nullptr;
    case Level::kAvx512:
      return t.has_avx512 ? &t.avx512 : nullptr;
    case Level::kNeon:
      return t.has_neon ? &t.neon : nullptr;
    case Level::kNeonDot:
      return t.has_neondot ? &t.neondot : nullptr;
  }
  return nullptr;
}

const Kernels* by_name(std::string_view name) {
  if (name == "scalar") return by_level(Level::kScalar);
  if (name == "avx2") return by_level(Level::kAvx2);
  if (name == "avx512") return by_level(Level::kAvx512);
  if (name == "neon") return by_level(Level::kNeon);
  if (name == "neondot") return by_level(Level::kNeonDot);
  return nullptr;
}

const Kernels& active() {
  const Kernels* k = g_active.load(std::memory_order_acquire);
  if (k != nullptr) return *k;
  const Kernels* chosen = &choose();
  const Kernels* expected = nullptr;
  g_active.compare_exchange_strong(expected, chosen, std::memory_order_acq_rel);
  return *g_active.load(std::memory_order_acquire);
}

bool force(std::string_view name) {
  const Kernels* k = by_name(name);
  if (k == nullptr) return false;
  g_active.store(k, std::memory_order_release);
  return true;
}

const Kernels& ggml_order(const Kernels& base) {
  const Tables& t = tables();
  if (&base == &t.scalar) return t.scalar_ggml;
  if (&base == &t.avx2) return t.avx2_ggml;
  if (&base == &t.avx512) return t.avx512_ggml;
  return base;
}

MatmulFn matmul_for(const Kernels& t, GgmlType type) {
  switch (type) {
    case GgmlType::kF32:
      return t.matmul_f32;
    case GgmlType::kF16:
      return t.matmul_f16;
    case GgmlType::kBF16:
      return t.matmul_bf16;
    case GgmlType::kQ8_0:
      return t.matmul_q8_0;
    case GgmlType::kQ4_0:
      return t.matmul_q4_0;
    case GgmlType::kQ4_1:
      return t.matmul_q4_1;
    case GgmlType::kQ5_0:
      return t.matmul_q5_0;
    case GgmlType::kQ5_1:
      return t.matmul_q5_1;
    case GgmlType::kQ2_K:
      return t.matmul_q2_k;
    case GgmlType::kQ3_K:
      return t.matmul_q3_k;
    case GgmlType::kQ4_K:
      return t.matmul_q4_k;
    case GgmlType::kQ5_K:
      return t.matmul_q5_k;
    case GgmlType::kQ6_K:
      return t.matmul_q6_k;
    default:
      return nullptr;
  }
}

MatmulInput matmul_input(GgmlType type) {
  switch (type) {
    case GgmlType::kQ8_0:
    case GgmlType::kQ4_0:
    case GgmlType::kQ4_1:
    case GgmlType::kQ5_0:
    case GgmlType::kQ5_1:
      return MatmulInput::kQ8;
    case GgmlType::kQ2_K:
    case GgmlType::kQ3_K:
    case GgmlType::kQ4_K:
    case GgmlType::kQ5_K:
    case GgmlType::kQ6_K:
      return MatmulInput::kQ8K;
    default:
      return MatmulInput::kF32;
  }
}

void rope_angles(int pos, int rot_dim, float base, float freq_scale, float* cos, float* sin) {
  // theta_i = pos * base^(-2i/rot_dim) (RoFormer, arXiv:2104.09864). Computed as ggml
  // does, by repeated multiplication in float, so that the angles round the same way
  // and greedy outputs can match llama.cpp's token for token.
  const float theta_scale = std::pow(base, -2.0f / static_cast<float>(rot_dim));
  float theta = static_cast<float>(pos);
  for (int i = 0; i < rot_dim / 2; ++i) {
    cos[i] = std::cos(freq_scale * theta);
    sin[i] = std::sin(freq_scale * theta);
    theta *= theta_scale;
  }
}

}  // namespace infera::engine::kernels
