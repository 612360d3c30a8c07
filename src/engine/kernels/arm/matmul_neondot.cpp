// NEON with the dot-product extension (SDOT): the "neondot" table's Q8_0 and Q4_0
// matrix products; every other entry is the "neon" table's. Compiled with
// -march=armv8.2-a+dotprod+fp16 (CMakeLists.txt, by file name); only called after
// dispatch.cpp has seen HWCAP_ASIMDDP (Cortex-A55/A76 and later, e.g. the Orange Pi 5).
//
// SDOT adds four products of signed bytes into each int32 lane, so a block's integer
// dot is two instructions. Tiling and the batch-invariance contract: tiles_neon.h.
#include <arm_neon.h>

#include "engine/kernels/arm/tiles_neon.h"

namespace infera::engine::kernels {
namespace {

int32x4_t dot32_sdot(int8x16_t w0, int8x16_t w1, int8x16_t x0, int8x16_t x1) {
  return vdotq_s32(vdotq_s32(vdupq_n_s32(0), w0, x0), w1, x1);
}

struct Q8Dot : Q8Unpack {
  static int32x4_t dot(int8x16_t w0, int8x16_t w1, int8x16_t x0, int8x16_t x1) {
    return dot32_sdot(w0, w1, x0, x1);
  }
};
struct Q4Dot : Q4Unpack {
  static int32x4_t dot(int8x16_t w0, int8x16_t w1, int8x16_t x0, int8x16_t x1) {
    return dot32_sdot(w0, w1, x0, x1);
  }
};

}  // namespace

void fill_neondot(Kernels& t) {
  t.matmul_q8_0 = matmul_quant<Q8Dot>;
  t.matmul_q4_0 = matmul_quant<Q4Dot>;
}

}  // namespace infera::engine::kernels
