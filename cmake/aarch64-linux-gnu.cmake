# Cross build for 64-bit ARM Linux (Orange Pi 5, Raspberry Pi 4/5, Graviton) on a
# Debian x86-64 host, with Debian's cross compiler (g++-aarch64-linux-gnu) and its
# target libraries under /usr/aarch64-linux-gnu. Binaries run on the host through
# qemu-user (qemu-aarch64), which also serves ctest and gtest_discover_tests.
#
#   cmake -S . -B build-arm -G Ninja --toolchain cmake/aarch64-linux-gnu.cmake \
#     -DINFERA_ENGINE_ONLY=ON -DINFERA_GTEST_SOURCE_DIR=/usr/src/googletest
#
# scripts/build-arm does exactly this; docs/ARM.md explains the ARM builds.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)

# Libraries come from the target's tree; header-only packages and their CMake
# configuration files (nlohmann_json) are architecture-independent and found on the
# host's /usr as well.
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)

# qemu-user with the target's dynamic loader and libraries. Tests run on an emulated
# Cortex-A76 (the Orange Pi 5's big core: ARMv8.2-A with SDOT and FP16) unless a test
# names another model with -cpu (CMakeLists.txt).
set(INFERA_QEMU qemu-aarch64 -L /usr/aarch64-linux-gnu)
set(CMAKE_CROSSCOMPILING_EMULATOR ${INFERA_QEMU} -cpu cortex-a76)
