#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Prepares, on a build machine, a CUDA build for scripts/gpu-check.sh on a GPU machine that
# compiles nothing and has neither glog nor Open MPI. Usage: scripts/gpu-prepare.sh BUILD_DIR
#
# 1. Build here (CUDA 20 needs CMake >= 3.26; Debian 12's 3.25 fails in enable_language(CUDA),
#    so use PyPI's: python3 -m venv .venv-cmake && .venv-cmake/bin/pip install cmake):
#      .venv-cmake/bin/cmake -S . -B build-gpu -G Ninja -DDF11_BUILD_BENCHMARKS=ON
#      .venv-cmake/bin/cmake --build build-gpu --target df11 df11-run df11_decode_cuda_bench \
#          $(.venv-cmake/bin/ctest --test-dir build-gpu -L gpu -N | sed -n 's/^ *Test *#[0-9]*: //p')
#    (every test labelled gpu must be built: `ctest --test-dir build-gpu -L gpu -N` lists them).
# 2. bash scripts/gpu-prepare.sh build-gpu
#    - BUILD_DIR/gpu-libs: the non-system shared libraries the gpu tests, the CUDA bench, df11
#      and df11-run need (per ldd; not libc/libm/libstdc++/libgcc/ld-linux, nothing CUDA, nothing
#      the Open MPI folder has), unpacked from their Debian packages (apt-get download +
#      dpkg -x), else copied from where ldd found them;
#    - BUILD_DIR/gpu-bundle: what the GPU check needs, at its paths relative to BUILD_DIR (the
#      CTestTestfile.cmake files, CMakeCache.txt, those binaries with debug info stripped,
#      gpu-libs, and openmpi/: a relocatable Open MPI made by scripts/gpu-openmpi.sh);
#    - BUILD_DIR/gpu-bundle.tar.xz (or .tar.zst, whichever is smaller): that folder in one
#      archive, which is what travels; gpu-check.sh unpacks it;
#    - fails when the pure kernel test or the bench links glog or MPI, or the archive and the
#      tracked tree together exceed MAX_CARRY_MIB (the device tool carries 64 MiB at most).
# 3. On the GPU machine (device tool, repo root): carry ["build-gpu/gpu-bundle.tar.xz"] and run
#      bash scripts/gpu-check.sh build-gpu $OUT
set -euo pipefail

BUILD_DIR=${1:?usage: scripts/gpu-prepare.sh BUILD_DIR}
BUILD_DIR=$(cd "$BUILD_DIR" && pwd)
BUNDLE="$BUILD_DIR/gpu-bundle"
LIBS="$BUILD_DIR/gpu-libs"
MAX_CARRY_MIB=60   # the archive and the tracked tree together (the device tool carries 64 MiB)

die() { echo "gpu-prepare: $*" >&2; exit 1; }
[ -f "$BUILD_DIR/CMakeCache.txt" ] || die "$BUILD_DIR is not a CMake build folder"
CTEST=$(sed -n 's/^CMAKE_CTEST_COMMAND:INTERNAL=//p' "$BUILD_DIR/CMakeCache.txt")
[ -x "${CTEST:-}" ] || CTEST=$(command -v ctest) || die "no ctest"

# The binaries that run on the GPU machine: every gpu-labelled test (its own binary where ctest
# runs it under mpiexec), the CUDA benches, and the launchers df11 and df11-run.
mapfile -t TESTS < <("$CTEST" --test-dir "$BUILD_DIR" -L gpu --show-only=json-v1 |
  python3 -c '
import json, os, sys
build = sys.argv[1]
for t in json.load(sys.stdin)["tests"]:
    cmd = t["command"]
    mine = [c for c in cmd if c.startswith(build + "/")]
    runnable = [c for c in mine if os.access(c, os.X_OK)]
    print((runnable or mine or cmd)[0])' "$BUILD_DIR" | sort -u)
[ ${#TESTS[@]} -gt 0 ] || die "no test labelled gpu in $BUILD_DIR (configured with CUDA?)"
mapfile -t BENCHES < <(find "$BUILD_DIR/bench" -maxdepth 1 -type f -executable -name '*cuda*bench*' 2>/dev/null)
[ ${#BENCHES[@]} -gt 0 ] || die "no CUDA bench in $BUILD_DIR/bench (-DDF11_BUILD_BENCHMARKS=ON, build df11_decode_cuda_bench)"
LAUNCHERS=()
for name in df11 df11-run; do
  hit=$(find "$BUILD_DIR" -path "$BUILD_DIR/gpu-bundle" -prune -o -type f -executable -name "$name" -print | head -1)
  [ -n "$hit" ] || die "no $name in $BUILD_DIR (build the targets df11 and df11-run)"
  LAUNCHERS+=("$hit")
done
BINARIES=("${TESTS[@]}" "${BENCHES[@]}" "${LAUNCHERS[@]}")
for b in "${BINARIES[@]}"; do
  [ -x "$b" ] || die "$b is not built"
  case "$b" in "$BUILD_DIR"/*) ;; *) die "$b is outside $BUILD_DIR" ;; esac
done

# Kernel-only binaries must not need glog or MPI (the GPU machine has neither).
for b in "$BUILD_DIR/tests/kernels/df11_decode_cuda_test" "$BUILD_DIR/tests/kernels/ew4_gemv_cuda_test" \
         "$BUILD_DIR/tests/kernels/ew4_gemm_tc_cuda_test" "${BENCHES[@]}"; do
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

# Open MPI and the libraries it brings (libmpi, hwloc, libevent, PMIx, ...) come as one
# relocatable folder; gpu-libs leaves those out.
rm -rf "$BUNDLE"
mkdir -p "$BUNDLE"
bash "$(dirname "$0")/gpu-openmpi.sh" "$BUNDLE/openmpi"
OMPI_LIBS="$BUNDLE/openmpi/usr/lib/x86_64-linux-gnu"

rm -rf "$LIBS"
mkdir -p "$LIBS"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
for lib in "${NEEDED[@]}"; do
  name=$(basename "$lib")
  if [ -e "$OMPI_LIBS/$name" ]; then echo "gpu-libs: $name (in openmpi/)"; continue; fi
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

# The bundle: paths relative to BUILD_DIR; gpu-check.sh unpacks it into BUILD_DIR there.
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
# The tokenizers gpu-check-e2e.sh uses (Qwen 3 for the tiny model, Llama 3.1 for the 8B-shaped
# one), as the configure step unpacked them from tests/data/tokenizers/.
mkdir -p "$BUNDLE/data/tokenizers"
cp -a "$BUILD_DIR/data/tokenizers/qwen3" "$BUILD_DIR/data/tokenizers/llama-3.1" "$BUNDLE/data/tokenizers/"

MPIEXEC=$(sed -n 's/^MPIEXEC_EXECUTABLE:FILEPATH=//p' "$BUILD_DIR/CMakeCache.txt")
# ctest runs MPI tests with the recorded mpiexec: gpu-check.sh points that at openmpi/.
[ -n "$MPIEXEC" ] && echo "$MPIEXEC" >"$BUNDLE/gpu-mpiexec.txt"

# One archive: xz -9 or zstd -19, whichever is smaller (gpu-check.sh reads either).
rm -f "$BUILD_DIR"/gpu-bundle.tar.*
tar -C "$BUNDLE" -cf "$WORK/bundle.tar" .
xz -9 -T0 -c "$WORK/bundle.tar" >"$WORK/bundle.tar.xz"
ARCHIVE="$BUILD_DIR/gpu-bundle.tar.xz"
if command -v zstd >/dev/null; then
  zstd -q -19 -T0 -c "$WORK/bundle.tar" >"$WORK/bundle.tar.zst"
  echo "gpu-prepare: xz -9 $(stat -c %s "$WORK/bundle.tar.xz") B, zstd -19 $(stat -c %s "$WORK/bundle.tar.zst") B"
  if [ "$(stat -c %s "$WORK/bundle.tar.zst")" -lt "$(stat -c %s "$WORK/bundle.tar.xz")" ]; then
    ARCHIVE="$BUILD_DIR/gpu-bundle.tar.zst"
  fi
fi
cp "$WORK/bundle.tar.${ARCHIVE##*.}" "$ARCHIVE"

echo "gpu-prepare: bundle contents (uncompressed; files over 100 KiB):"
(cd "$BUNDLE" && find . -type f -size +100k -exec du -k {} + | sort -n |
  awk '{printf "  %8d KiB  %s\n", $1, $2}')
echo "  openmpi/: $(find "$BUNDLE/openmpi" -type f | wc -l) files, $(du -sh "$BUNDLE/openmpi" | cut -f1);" \
  "gpu-libs/: $(ls "$BUNDLE/gpu-libs" | wc -l) libraries, $(du -sh "$BUNDLE/gpu-libs" | cut -f1)"
REPO=$(cd "$(dirname "$0")/.." && pwd)
tree_bytes=$(cd "$REPO" && git ls-files -z | xargs -0 stat -c %s 2>/dev/null | awk '{s += $1} END {print s + 0}')
archive_bytes=$(stat -c %s "$ARCHIVE")
total_kib=$(((tree_bytes + archive_bytes) / 1024))
echo "gpu-prepare: $(du -sk "$BUNDLE" | cut -f1) KiB unpacked -> $ARCHIVE $((archive_bytes / 1024)) KiB;" \
  "tracked tree $((tree_bytes / 1024)) KiB; together $((total_kib / 1024)) MiB (limit $MAX_CARRY_MIB MiB);" \
  "whole build folder $(du -sh "$BUILD_DIR" | cut -f1)"
[ "$total_kib" -le $((MAX_CARRY_MIB * 1024)) ] || die "archive + tracked tree over $MAX_CARRY_MIB MiB"
rel_archive=$(realpath --relative-to="$REPO" "$ARCHIVE")
echo "gpu-prepare: on the GPU machine carry [\"$rel_archive\"] and run:" \
  "bash scripts/gpu-check.sh $(dirname "$rel_archive") \$OUT"
