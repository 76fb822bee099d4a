#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Prepares, on a build machine, a CUDA build for scripts/gpu-check.sh on a GPU machine that
# compiles nothing and has neither glog nor Open MPI. Usage: scripts/gpu-prepare.sh BUILD_DIR
#
# 1. Build here (CUDA 20 needs CMake >= 3.26; Debian 12's 3.25 fails in enable_language(CUDA),
#    so use PyPI's: python3 -m venv .venv-cmake && .venv-cmake/bin/pip install cmake):
#      .venv-cmake/bin/cmake -S . -B build-gpu -G Ninja -DDF11_BUILD_BENCHMARKS=ON
#      .venv-cmake/bin/cmake --build build-gpu --target df11_decode_cuda_test \
#          df11_decode_cuda_ref_units_test df11_decode_cuda_bench
#    (every test labelled gpu must be built: `ctest --test-dir build-gpu -L gpu -N` lists them).
# 2. bash scripts/gpu-prepare.sh build-gpu
#    - BUILD_DIR/gpu-libs: the non-system shared libraries the gpu test and bench binaries need
#      (per ldd; not libc/libm/libstdc++/libgcc/ld-linux, nothing CUDA), unpacked from their
#      Debian packages (apt-get download + dpkg -x), else copied from where ldd found them;
#    - BUILD_DIR/gpu-bundle: what the GPU check needs, at its paths relative to BUILD_DIR (the
#      CTestTestfile.cmake files, CMakeCache.txt, those binaries with debug info stripped, and
#      gpu-libs): a few MB, where the whole build folder is well over the 64 MiB carry limit;
#    - fails when the pure kernel test or the bench links glog or MPI, or the bundle is too big.
# 3. On the GPU machine (device tool, repo root): carry ["build-gpu/gpu-bundle"] and run
#      bash scripts/gpu-check.sh build-gpu $OUT
set -euo pipefail

BUILD_DIR=${1:?usage: scripts/gpu-prepare.sh BUILD_DIR}
BUILD_DIR=$(cd "$BUILD_DIR" && pwd)
BUNDLE="$BUILD_DIR/gpu-bundle"
LIBS="$BUILD_DIR/gpu-libs"
MAX_BUNDLE_MIB=48   # the tree and the bundle together travel within 64 MiB

die() { echo "gpu-prepare: $*" >&2; exit 1; }
[ -f "$BUILD_DIR/CMakeCache.txt" ] || die "$BUILD_DIR is not a CMake build folder"
CTEST=$(sed -n 's/^CMAKE_CTEST_COMMAND:INTERNAL=//p' "$BUILD_DIR/CMakeCache.txt")
[ -x "${CTEST:-}" ] || CTEST=$(command -v ctest) || die "no ctest"

# The binaries that run on the GPU machine: every gpu-labelled test, and the CUDA benches.
mapfile -t TESTS < <("$CTEST" --test-dir "$BUILD_DIR" -L gpu --show-only=json-v1 |
  python3 -c 'import json, sys; [print(t["command"][0]) for t in json.load(sys.stdin)["tests"]]')
[ ${#TESTS[@]} -gt 0 ] || die "no test labelled gpu in $BUILD_DIR (configured with CUDA?)"
mapfile -t BENCHES < <(find "$BUILD_DIR/bench" -maxdepth 1 -type f -executable -name '*cuda*bench*' 2>/dev/null)
[ ${#BENCHES[@]} -gt 0 ] || die "no CUDA bench in $BUILD_DIR/bench (-DDF11_BUILD_BENCHMARKS=ON, build df11_decode_cuda_bench)"
BINARIES=("${TESTS[@]}" "${BENCHES[@]}")
for b in "${BINARIES[@]}"; do
  [ -x "$b" ] || die "$b is not built"
  case "$b" in "$BUILD_DIR"/*) ;; *) die "$b is outside $BUILD_DIR" ;; esac
done

# Kernel-only binaries must not need glog or MPI (the GPU machine has neither).
for b in "$BUILD_DIR/tests/kernels/df11_decode_cuda_test" "${BENCHES[@]}"; do
  if ldd "$b" | grep -Eq 'libglog|libmpi|libopen-(pal|rte)'; then
    die "$(basename "$b") links glog or MPI: $(ldd "$b" | grep -E 'libglog|libmpi|libopen-' | tr -s ' \t' ' ')"
  fi
done

# Non-system libraries, as ldd resolves them here (transitive dependencies included).
SYSTEM='linux-vdso|ld-linux|/libc\.so|/libm\.so|/libstdc\+\+|/libgcc_s|/libpthread|/libdl\.so|/librt\.so|/libresolv|/libutil\.so'
CUDA='/libcuda|/libcudart|/libcublas|/libnccl|/libnv|/libcupti|/usr/local/cuda'
mapfile -t NEEDED < <(for b in "${BINARIES[@]}"; do ldd "$b"; done |
  awk '$2 == "=>" && $3 ~ /^\// {print $3}' | grep -Ev "$SYSTEM" | grep -Ev "$CUDA" | sort -u)
if for b in "${BINARIES[@]}"; do ldd "$b"; done | grep -q 'not found'; then
  die "unresolved libraries here: $(for b in "${BINARIES[@]}"; do ldd "$b"; done | grep 'not found' | sort -u | tr -s ' \t\n' ' ')"
fi

rm -rf "$LIBS"
mkdir -p "$LIBS"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
for lib in "${NEEDED[@]}"; do
  name=$(basename "$lib")
  real=$(readlink -f "$lib")
  pkg=""
  for p in "$lib" "$real" "/usr${lib#/usr}" "${lib#/usr}" "/usr${real#/usr}" "${real#/usr}"; do
    pkg=$(dpkg -S "$p" 2>/dev/null | head -1 | sed 's/: .*//') && [ -n "$pkg" ] && break
  done
  got=""
  if [ -n "$pkg" ]; then
    mkdir -p "$WORK/$pkg"
    if (cd "$WORK/$pkg" && apt-get download -qq "$pkg" >/dev/null 2>&1) &&
       dpkg -x "$WORK/$pkg"/*.deb "$WORK/$pkg/root"; then
      found=$(find "$WORK/$pkg/root" -name "$name" | head -1)
      if [ -n "$found" ]; then cp -L "$found" "$LIBS/$name" && got="apt-get download $pkg"; fi
    fi
  fi
  if [ -z "$got" ]; then cp -L "$lib" "$LIBS/$name" && got="copied from $lib"; fi
  echo "gpu-libs: $name ($got)"
done
[ ${#NEEDED[@]} -gt 0 ] || echo "gpu-libs: none needed (every library is system or CUDA)"

# The bundle: paths relative to BUILD_DIR; gpu-check.sh copies it into BUILD_DIR there.
rm -rf "$BUNDLE"
mkdir -p "$BUNDLE"
(cd "$BUILD_DIR" && find . -name CTestTestfile.cmake -not -path './gpu-bundle/*' -print0 |
  xargs -0 cp -p --parents -t "$BUNDLE" && cp -p CMakeCache.txt "$BUNDLE/")
for b in "${BINARIES[@]}"; do
  rel=${b#"$BUILD_DIR"/}
  mkdir -p "$BUNDLE/$(dirname "$rel")"
  strip --strip-debug -o "$BUNDLE/$rel" "$b"
  touch -r "$b" "$BUNDLE/$rel"  # same time as the original: gpu-check.sh copies only newer files
  echo "${rel}" >>"$BUNDLE/gpu-binaries.txt"
done
cp -a "$LIBS" "$BUNDLE/gpu-libs"

size_kib=$(du -sk "$BUNDLE" | cut -f1)
echo "gpu-prepare: bundle $BUNDLE: $((size_kib / 1024)) MiB ($size_kib KiB), whole build folder $(du -sh "$BUILD_DIR" | cut -f1)"
(cd "$BUNDLE" && find . -type f -size +100k -exec du -h {} + | sort -h | sed 's/^/  /')
[ "$size_kib" -le $((MAX_BUNDLE_MIB * 1024)) ] || die "bundle over $MAX_BUNDLE_MIB MiB"
rel_bundle=$(realpath --relative-to="$(cd "$(dirname "$0")/.." && pwd)" "$BUNDLE")
echo "gpu-prepare: on the GPU machine carry [\"$rel_bundle\"] and run:" \
  "bash scripts/gpu-check.sh $(dirname "$rel_bundle") \$OUT"
