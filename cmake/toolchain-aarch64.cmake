# Cross build for AArch64 Linux with Debian's cross toolchain, run under qemu-user.
#
#   cmake -S . -B build/aarch64 -DCMAKE_TOOLCHAIN_FILE=cmake/toolchain-aarch64.cmake
#
# Needs gcc-aarch64-linux-gnu, libc6-dev-arm64-cross and qemu-user, and for the tests
# libcmocka-dev:arm64 from Debian multiarch (scripts/install-deps.sh installs them all).
#
# Two places hold AArch64 files: the cross toolchain's own root /usr/aarch64-linux-gnu (its
# libc) and the multiarch directories of the host root, /usr/lib/aarch64-linux-gnu (arm64
# packages such as cmocka; headers in the shared /usr/include). Both are find roots, and
# libraries are looked for only in them, never in the host's x86-64 directories.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

set(WEFT_AARCH64_TRIPLE aarch64-linux-gnu)
set(CMAKE_C_COMPILER ${WEFT_AARCH64_TRIPLE}-gcc)
set(CMAKE_ASM_COMPILER ${WEFT_AARCH64_TRIPLE}-gcc)
set(CMAKE_LIBRARY_ARCHITECTURE ${WEFT_AARCH64_TRIPLE})

set(CMAKE_FIND_ROOT_PATH /usr/${WEFT_AARCH64_TRIPLE} /)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER) # build tools are host programs
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# pkg-config must see the arm64 .pc files only (an x86-64 cmocka.pc would link the wrong
# library). An explicit PKG_CONFIG_LIBDIR in the environment wins.
if(NOT DEFINED ENV{PKG_CONFIG_LIBDIR})
  set(ENV{PKG_CONFIG_LIBDIR} /usr/lib/${WEFT_AARCH64_TRIPLE}/pkgconfig:/usr/share/pkgconfig)
endif()

# ctest runs each test binary under qemu. Its dynamic loader and libc must come from one
# glibc build: the loader and libc.so.6 of a program are one unit, and mixing two builds
# (say ld.so from the cross toolchain, libc from multiarch) hangs at the first
# pthread_create. With multiarch libc6:arm64 installed (libcmocka0:arm64 depends on it)
# the program's own interpreter /lib/ld-linux-aarch64.so.1 exists and every library comes
# from the arm64 packages, so no prefix is given; qemu's -L /usr/aarch64-linux-gnu would
# take ld.so from the cross toolchain while ld.so still finds the multiarch libc.so.6
# first. Without multiarch, -L points qemu at the cross toolchain's loader and libc.
find_program(WEFT_QEMU_AARCH64 qemu-aarch64)
if(NOT WEFT_QEMU_AARCH64)
  message(WARNING "qemu-aarch64 not found (Debian: qemu-user): ctest cannot run the tests")
elseif(EXISTS /lib/ld-linux-aarch64.so.1)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${WEFT_QEMU_AARCH64})
else()
  set(CMAKE_CROSSCOMPILING_EMULATOR ${WEFT_QEMU_AARCH64} -L /usr/${WEFT_AARCH64_TRIPLE})
endif()
