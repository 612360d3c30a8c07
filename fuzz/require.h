// The fuzz targets' assertion: aborts (a libFuzzer crash, the input saved) naming the
// broken promise. Unlike assert() it stays on in release builds.
#pragma once

#include <cstdio>
#include <cstdlib>

#define require(condition)                                                         \
  do {                                                                             \
    if (!(condition)) {                                                            \
      std::fprintf(stderr, "%s:%d: broken: %s\n", __FILE__, __LINE__, #condition); \
      std::abort();                                                                \
    }                                                                              \
  } while (0)
