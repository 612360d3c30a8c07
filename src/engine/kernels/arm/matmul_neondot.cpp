// NEON with the dot-product extension (SDOT): the "neondot" table's quantized matrix
// products (the 32-element types and the K-quants); every other entry is the "neon"
// table's. Compiled with -march=armv8.2-a+dotprod+fp16 (CMakeLists.txt, by file name);
// only called after dispatch.cpp has seen HWCAP_ASIMDDP (Cortex-A55/A76 and later,
// e.g. the Orange Pi 5).
//
// SDOT adds four products of signed bytes into each int32 lane, so 32 products are two
// instructions. Tiling and the batch-invariance contract: tiles_neon.h, kquants_neon.h.
#include <arm_neon.h>

#include "engine/kernels/arm/kquants_neon.h"
#include "engine/kernels/arm/tiles_neon.h"

namespace infera::engine::kernels {
namespace {

struct SdotDot {
  static int32x4_t dot_acc(int32x4_t acc, int8x16_t w, int8x16_t x) { return vdotq_s32(acc, w, x); }
};

}  // namespace

void fill_neondot(Kernels& t) {
  fill_quant32<SdotDot>(t);
  fill_kquants<SdotDot>(t);
}

}  // namespace infera::engine::kernels
