// avx512 kernels (in progress).
#include "engine/kernels/tables.h"

namespace infera::engine::kernels {

void fill_avx512(Kernels& t) { (void)t; }

}  // namespace infera::engine::kernels
