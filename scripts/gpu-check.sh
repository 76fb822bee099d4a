#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The GPU check, run on a GPU machine over a build made elsewhere (nothing compiles here; see
# scripts/gpu-prepare.sh for the build and the bundle that travels). Usage, from the repo root:
#   bash scripts/gpu-check.sh BUILD_DIR OUT_DIR
# Steps, each under `timeout`, each logged raw into OUT_DIR: nvidia-smi -L; library check (ldd,
# with BUILD_DIR/gpu-libs, the bundled Open MPI, the CUDA toolkit and PyTorch's pip NCCL/cuBLAS
# on LD_LIBRARY_PATH); then the parts named in GPU_CHECK_PARTS (default kernels,e2e):
#   kernels: ctest -L gpu (among them the CUDA backend against transformers' logits for the
#            models in tests/data/hf_models); compute-sanitizer memcheck on the pure kernel
#            test; the decode bench; the paged BF16 KV attention test under memcheck; the ew4
#            kernel test under memcheck and the ew4 fused GEMV against cuBLAS BF16
#            (bench/ew4_gemv_cuda_bench: four shapes, batch 1, 4, 8; targets >= 1.2x at batch
#            1, >= 1.0x at batch 8); the ew4 tensor-core GEMM against cuBLAS BF16 (its test's
#            fragment and all-escape cases under memcheck, then bench/ew4_gemm_tc_cuda_bench: the
#            same shapes, 16-256 tokens; target >= 1.0x up to 128 tokens; its measurements kept
#            as OUT_DIR/ew4-gemm-table.txt);
#   e2e:     df11 / df11-run end to end (scripts/gpu-check-e2e.sh): a tiny model on cpu vs cuda
#            and on 2 MPI ranks, an 8B-shaped random model's logits (DF11 == BF16 bitwise, with
#            the paged BF16 KV cache) and generation speed beside the FP32-KV figures and the
#            plan's KV tokens.
# Ends with one table. Exit 0: all passed; 1: a correctness check failed or did not run; 2: only
# a speed target was missed. All of it within GPU_CHECK_BUDGET seconds (default 540): a step
# gets what is left when its own timeout would overrun (see budget()).
set -uo pipefail

if [ $# -ne 2 ]; then
  echo "usage: scripts/gpu-check.sh BUILD_DIR OUT_DIR" >&2
  exit 1
fi
REPO=$(cd "$(dirname "$0")/.." && pwd)
BUILD_DIR=$(cd "$1" 2>/dev/null && pwd) || { echo "gpu-check: no build folder $1" >&2; exit 1; }
mkdir -p "$2" && OUT_DIR=$(cd "$2" && pwd) || exit 1
CTEST_TIMEOUT=${CTEST_TIMEOUT:-120}        # seconds for all gpu tests (each: 120)
MEMCHECK_TIMEOUT=${MEMCHECK_TIMEOUT:-90}
BENCH_TIMEOUT=${BENCH_TIMEOUT:-60}
BENCH_SIZES=${BENCH_SIZES:-64,256,1024}
GPU_CHECK_PARTS=${GPU_CHECK_PARTS:-kernels,e2e}
GPU_CHECK_BUDGET=${GPU_CHECK_BUDGET:-540}
TARGET_PCT=60     # decode bytes moved / copy bandwidth, at 256 Mi weights
KERNEL_TEST=tests/kernels/df11_decode_cuda_test
BENCH=bench/df11_decode_cuda_bench
EW4_TEST=tests/kernels/ew4_gemv_cuda_test
PAGED_TEST=tests/kernels/paged_attention_cuda_test
EW4_BENCH=bench/ew4_gemv_cuda_bench
EW4_BENCH_TIMEOUT=${EW4_BENCH_TIMEOUT:-90}
EW4_TC_TEST=tests/kernels/ew4_gemm_tc_cuda_test
EW4_TC_BENCH=bench/ew4_gemm_tc_cuda_bench
EW4_TC_BENCH_TIMEOUT=${EW4_TC_BENCH_TIMEOUT:-120}

START=$SECONDS
ROWS=()
FAILED=0
PERF_MISSED=0
say() { echo "[gpu-check +$((SECONDS - START))s] $*"; }
# row NAME VALUE STATUS: STATUS PASS, FAIL (a correctness failure), MISS (speed target) or info.
row() {
  ROWS+=("$1|$2|$3")
  case "$3" in FAIL) FAILED=1 ;; MISS) PERF_MISSED=1 ;; esac
}
json_field() { sed -n "s/.*\"$2\":\([^,}]*\).*/\1/p" <<<"$1" | head -1; }
part() { [[ ",$GPU_CHECK_PARTS," == *",$1,"* ]]; }
# budget SECONDS: the timeout a step may use: its own, or what is left of the whole budget
# (1 s once that is spent, so that late steps fail fast as timed out instead of overrunning).
budget() {
  local left=$((GPU_CHECK_BUDGET - (SECONDS - START) - 5))
  [ "$left" -ge 1 ] || left=1
  echo $(($1 < left ? $1 : left))
}

print_table() {
  local gpu
  gpu=$(sed -n '1s/ (UUID.*//p' "$OUT_DIR/nvidia-smi.log" 2>/dev/null)
  {
    echo
    echo "== gpu-check summary: ${gpu:-no GPU found} ($((SECONDS - START)) s; logs in $OUT_DIR) =="
    printf '%-36s %-52s %s\n' "check" "result" "status"
    for r in "${ROWS[@]}"; do
      IFS='|' read -r name value status <<<"$r"
      printf '%-36s %-52s %s\n' "$name" "$value" "$status"
    done
    if [ $FAILED -ne 0 ]; then
      echo "overall: FAIL"
    elif [ $PERF_MISSED -ne 0 ]; then
      echo "overall: correct, but below the speed target"
    else
      echo "overall: PASS"
    fi
  } | tee "$OUT_DIR/summary.txt"
}
# The logs also as one archive (all-logs.tar.gz), for tools that bring back only a few files.
# tar exits 1 when a file grew while it was read (a caller still appending to a log in OUT_DIR);
# the archive is complete enough then, so keep it.
pack_logs() {
  (cd "$OUT_DIR" && { tar -czf all-logs.tar.gz.tmp --exclude='all-logs.tar.gz*' . 2>/dev/null
    [ -s all-logs.tar.gz.tmp ] && mv -f all-logs.tar.gz.tmp all-logs.tar.gz; })
}
trap 'print_table; pack_logs; trap - EXIT; exit $(( FAILED ? 1 : (PERF_MISSED ? 2 : 0) ))' EXIT

# The build travels as BUILD_DIR/gpu-bundle.tar.xz or .tar.zst (see gpu-prepare.sh), or as
# the folder BUILD_DIR/gpu-bundle: unpack it over what an earlier run left, keeping newer files
# (where the bundle was made, those are the originals).
for archive in "$BUILD_DIR"/gpu-bundle.tar.xz "$BUILD_DIR"/gpu-bundle.tar.zst; do
  [ -f "$archive" ] || continue
  say "unpacking $(basename "$archive")"
  rm -rf "$BUILD_DIR/gpu-bundle" && mkdir -p "$BUILD_DIR/gpu-bundle"
  case "$archive" in
    *.xz) timeout 120 tar -xJf "$archive" -C "$BUILD_DIR/gpu-bundle" 2>"$OUT_DIR/unpack.log" ||
      timeout 120 python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' \
        "$archive" "$BUILD_DIR/gpu-bundle" 2>>"$OUT_DIR/unpack.log" ;;
    *.zst) timeout 120 tar --zstd -xf "$archive" -C "$BUILD_DIR/gpu-bundle" 2>"$OUT_DIR/unpack.log" ;;
  esac || row "bundle" "unpacking $(basename "$archive") failed (unpack.log)" FAIL
  break
done
if [ -d "$BUILD_DIR/gpu-bundle" ]; then
  cp -a -u "$BUILD_DIR/gpu-bundle/." "$BUILD_DIR/" || say "unpacking the bundle failed"
fi
BINARIES=()
if [ -f "$BUILD_DIR/gpu-binaries.txt" ]; then
  mapfile -t BINARIES <"$BUILD_DIR/gpu-binaries.txt"
else
  BINARIES=("$KERNEL_TEST" tests/kernels/df11_decode_cuda_ref_units_test "$BENCH" "$EW4_TEST" "$EW4_BENCH"
            "$EW4_TC_TEST" "$EW4_TC_BENCH" "$PAGED_TEST")
fi

# The build recorded absolute paths (ctest's test commands, the test data folder): where this
# copy of the repo lives elsewhere, link the recorded paths to it.
CACHE_SRC=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$BUILD_DIR/CMakeCache.txt" 2>/dev/null)
CACHE_BUILD=$(sed -n 's/^CMAKE_CACHEFILE_DIR:INTERNAL=//p' "$BUILD_DIR/CMakeCache.txt" 2>/dev/null)
for pair in "$CACHE_SRC|$REPO" "$CACHE_BUILD|$BUILD_DIR"; do
  recorded=${pair%%|*}
  if [ -n "$recorded" ] && [ ! -e "$recorded" ]; then
    mkdir -p "$(dirname "$recorded")" && ln -s "${pair#*|}" "$recorded" && say "linked $recorded -> ${pair#*|}"
  fi
done
export DF11_TEST_DATA_DIR="$REPO/tests/data"

say "nvidia-smi -L"
if timeout 30 nvidia-smi -L >"$OUT_DIR/nvidia-smi.log" 2>&1 && grep -q '^GPU' "$OUT_DIR/nvidia-smi.log"; then
  cat "$OUT_DIR/nvidia-smi.log"
  row "gpu" "$(grep -c '^GPU' "$OUT_DIR/nvidia-smi.log") visible" PASS
  GPU_FOUND=1
else
  cat "$OUT_DIR/nvidia-smi.log"
  row "gpu" "nvidia-smi -L found none" FAIL
  GPU_FOUND=0
fi

say "libraries"
LIB_DIRS=()
[ -d "$BUILD_DIR/gpu-libs" ] && LIB_DIRS+=("$BUILD_DIR/gpu-libs")
# The bundled Open MPI (gpu-openmpi.sh): its environment, its libraries first.
OMPI_ENV="$BUILD_DIR/openmpi/openmpi-env.sh"
if [ -f "$OMPI_ENV" ]; then
  # shellcheck disable=SC1090
  source "$OMPI_ENV"
  LIB_DIRS+=("$BUILD_DIR/openmpi/usr/lib/x86_64-linux-gnu")
fi
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
  [ -d "$d" ] && LIB_DIRS+=("$d")
done
# NCCL (and cuBLAS when the toolkit lacks it) come from PyTorch's pip packages here.
for mod in nccl cublas; do
  d=$(timeout 30 python3 -c "import nvidia.$mod as m, os; print(os.path.join(list(m.__path__)[0], 'lib'))" 2>/dev/null)
  [ -n "$d" ] && [ -d "$d" ] && LIB_DIRS+=("$d")
done
SITE_DIRS=$(timeout 30 python3 -c 'import site; print(" ".join(site.getsitepackages()))' 2>/dev/null)
LD_LIBRARY_PATH=$(IFS=:; echo "${LIB_DIRS[*]}")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export LD_LIBRARY_PATH
missing_libs() {
  for b in "${BINARIES[@]}"; do
    [ -f "$BUILD_DIR/$b" ] && ldd "$BUILD_DIR/$b" 2>&1 | awk '/not found/ {print $1}'
  done | sort -u
}
# Anything still missing: look in the pip packages' nvidia/*/lib folders and the CUDA folders.
for lib in $(missing_libs); do
  hit=$(find $SITE_DIRS /usr/local/cuda*/ -name "$lib" \( -type f -o -type l \) 2>/dev/null | head -1)
  if [ -n "$hit" ]; then
    export LD_LIBRARY_PATH="$(dirname "$hit"):$LD_LIBRARY_PATH"
    say "found $lib in $(dirname "$hit")"
  fi
done
{
  echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
  for b in "${BINARIES[@]}"; do echo "== $b"; ldd "$BUILD_DIR/$b" 2>&1; done
} >"$OUT_DIR/ldd.log"
absent=()
for b in "${BINARIES[@]}"; do [ -f "$BUILD_DIR/$b" ] || absent+=("$b"); done
missing=$(missing_libs | tr '\n' ' ')
if [ ${#absent[@]} -gt 0 ]; then
  row "binaries" "absent: ${absent[*]}" FAIL
fi
if [ -n "$missing" ]; then
  row "shared libraries" "missing: $missing" FAIL
else
  row "shared libraries" "all found" PASS
fi
heavy=""
for b in "$KERNEL_TEST" "$BENCH" "$EW4_TEST" "$EW4_BENCH" "$EW4_TC_TEST" "$EW4_TC_BENCH"; do
  if [ -f "$BUILD_DIR/$b" ] && ldd "$BUILD_DIR/$b" 2>&1 | grep -Eq 'libglog|libmpi|libopen-(pal|rte)'; then heavy+="$(basename "$b") "; fi
done
if [ -n "$heavy" ]; then row "kernel binaries: no glog/MPI" "linked by: $heavy" FAIL
else row "kernel binaries: no glog/MPI" "none linked" PASS; fi

# ctest runs MPI tests with the mpiexec recorded at configure time; in a copy that holds only
# the bundle (no build.ninja), point that at the bundled one.
if [ -f "$BUILD_DIR/gpu-mpiexec.txt" ] && [ -x "$BUILD_DIR/openmpi/usr/bin/mpiexec" ] &&
   [ ! -f "$BUILD_DIR/build.ninja" ]; then
  recorded_mpiexec=$(cat "$BUILD_DIR/gpu-mpiexec.txt")
  find "$BUILD_DIR" -name CTestTestfile.cmake -not -path "$BUILD_DIR/gpu-bundle/*" -exec \
    sed -i "s#\"$recorded_mpiexec\"#\"$BUILD_DIR/openmpi/usr/bin/mpiexec\"#g" {} +
fi

kernel_part() {
say "gpu tests"
CTEST_BIN=$(command -v ctest || true)
same_build=0
if [ -n "$CACHE_BUILD" ] && [ "$(cd "$CACHE_BUILD" 2>/dev/null && pwd -P)" = "$(cd "$BUILD_DIR" && pwd -P)" ]; then
  same_build=1
fi
if [ -n "$CTEST_BIN" ] && [ $same_build -eq 1 ]; then
  timeout "$(budget "$CTEST_TIMEOUT")" "$CTEST_BIN" --test-dir "$BUILD_DIR" -L gpu --timeout 120 -V \
    >"$OUT_DIR/ctest.log" 2>&1
  rc=$?
  results=$(grep -E '^ *[0-9]+/[0-9]+ Test +#[0-9]+: ' "$OUT_DIR/ctest.log")
  passed=$(grep -c ' Passed ' <<<"$results")
  total=$(grep -c . <<<"$results")
  runner="ctest"
else
  # No ctest, or the recorded paths could not be made to point here: run the binaries.
  : >"$OUT_DIR/ctest.log"
  passed=0 total=0 rc=0
  for b in "${BINARIES[@]}"; do
    case "$b" in tests/*) ;; *) continue ;; esac
    total=$((total + 1))
    echo "== $b" >>"$OUT_DIR/ctest.log"
    if timeout "$(budget 120)" "$BUILD_DIR/$b" >>"$OUT_DIR/ctest.log" 2>&1 && ! tail -20 "$OUT_DIR/ctest.log" | grep -q '^\[  SKIPPED \]'; then
      passed=$((passed + 1))
    else
      rc=1
    fi
  done
  runner="run directly"
fi
cases_passed=$(grep -oE '\[  PASSED  \] [0-9]+ test' "$OUT_DIR/ctest.log" | awk '{s += $4} END {print s + 0}')
cases_failed=$(grep -oE '\[  FAILED  \] [0-9]+ test' "$OUT_DIR/ctest.log" | awk '{s += $4} END {print s + 0}')
cases_skipped=$(grep -oE '\[  SKIPPED \] [0-9]+ test' "$OUT_DIR/ctest.log" | awk '{s += $4} END {print s + 0}')
grep -E 'Test +#[0-9]+:|tests passed|\[  FAILED  \] [A-Z]' "$OUT_DIR/ctest.log" | tail -30
status=PASS
if [ "$total" -eq 0 ] || [ "$passed" -ne "$total" ] || [ "$rc" -ne 0 ] || [ "$cases_skipped" -ne 0 ]; then status=FAIL; fi
[ "$rc" -eq 124 ] && runner+=", timed out"
row "gpu tests ($runner)" "$passed/$total binaries passed" "$status"
row "  gtest cases" "$cases_passed passed, $cases_failed failed, $cases_skipped skipped" "$status"
# The models transformers wrote (tests/data/hf_models: GELU, sliding windows, YaRN, Gemma 3 alone
# and multimodal): the CUDA backend's logits against transformers' (hf_models_cuda_test, one case
# per model).
HF_MODELS=6
hf_ok=$(grep -cE '\[ +OK \] Models/HfModelsCuda' "$OUT_DIR/ctest.log")
hf_failed=$(grep -cE '\[ +FAILED \] Models/HfModelsCuda' "$OUT_DIR/ctest.log")
hf_worst=$(sed -n 's/.*max |logit - transformers| \([0-9.e+-]*\).*/\1/p' "$OUT_DIR/ctest.log" |
  sort -g | tail -1)
hf_status=PASS
if [ "$hf_ok" -ne "$HF_MODELS" ] || [ "$hf_failed" -ne 0 ]; then hf_status=FAIL; fi
row "  transformers goldens (cuda)" "$hf_ok/$HF_MODELS models, max |logit diff| ${hf_worst:-?}" "$hf_status"
# The paged BF16 KV kernels (paged_attention_cuda_test: a batched step through block tables,
# graph replay with new tables, block copies) against their CPU reference.
paged_ok=$(grep -cE '\[ +OK \] PagedAttentionCudaTest\.' "$OUT_DIR/ctest.log")
paged_failed=$(grep -cE '\[ +FAILED \] PagedAttentionCudaTest\.' "$OUT_DIR/ctest.log")
paged_status=PASS
if [ "$paged_ok" -ne 3 ] || [ "$paged_failed" -ne 0 ]; then paged_status=FAIL; fi
row "  paged BF16 KV attention (cuda)" "$paged_ok/3 cases passed, $paged_failed failed" "$paged_status"
# The CUDA backend's sliding-window block group (cuda_backend_paging_test: Gemma 3's local
# layers through the engine against the CPU, their peak blocks, bad sliding tables refused).
window_ok=$(grep -cE '\[ +OK \] CudaBackendWindowTest\.' "$OUT_DIR/ctest.log")
window_failed=$(grep -cE '\[ +FAILED \] CudaBackendWindowTest\.' "$OUT_DIR/ctest.log")
window_status=PASS
if [ "$window_ok" -ne 2 ] || [ "$window_failed" -ne 0 ]; then window_status=FAIL; fi
row "  sliding-window KV group (cuda)" "$window_ok/2 cases passed, $window_failed failed" "$window_status"

say "compute-sanitizer memcheck"
SANITIZER=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null ||
  find /usr/local/cuda*/ /opt -name compute-sanitizer -type f 2>/dev/null | head -1)
if [ -z "$SANITIZER" ]; then
  row "memcheck errors" "compute-sanitizer not found" FAIL
elif [ ! -f "$BUILD_DIR/$KERNEL_TEST" ]; then
  row "memcheck errors" "$KERNEL_TEST absent" FAIL
else
  MEMCHECK_TIMEOUT=$(budget "$MEMCHECK_TIMEOUT")
  timeout "$MEMCHECK_TIMEOUT" "$SANITIZER" --tool memcheck --error-exitcode 99 --print-limit 50 \
    "$BUILD_DIR/$KERNEL_TEST" >"$OUT_DIR/memcheck.log" 2>&1
  rc=$?
  errors=$(sed -n 's/.*ERROR SUMMARY: \([0-9]*\) error.*/\1/p' "$OUT_DIR/memcheck.log" | tail -1)
  tail -5 "$OUT_DIR/memcheck.log"
  if [ "$rc" -eq 124 ]; then
    row "memcheck errors" "timed out after ${MEMCHECK_TIMEOUT} s" FAIL
  elif [ "$rc" -eq 0 ] && [ "${errors:-x}" = 0 ] && ! grep -q '^\[  SKIPPED \]' "$OUT_DIR/memcheck.log"; then
    row "memcheck errors" "0 (tests passed under memcheck)" PASS
  else
    row "memcheck errors" "${errors:-?} errors, exit $rc" FAIL
  fi
fi

say "decode bench"
if [ -f "$BUILD_DIR/$BENCH" ]; then
  timeout "$(budget "$BENCH_TIMEOUT")" "$BUILD_DIR/$BENCH" --sizes "$BENCH_SIZES" >"$OUT_DIR/bench.log" 2>&1
  rc=$?
  cat "$OUT_DIR/bench.log"
  copy=$(grep '^{"bench":"d2d_copy"' "$OUT_DIR/bench.log" | head -1)
  if [ -n "$copy" ]; then row "d2d copy GB/s (read+write)" "$(json_field "$copy" gbps)" info
  else row "d2d copy GB/s (read+write)" "no result (exit $rc)" FAIL; fi
  seen_256=0
  while IFS= read -r line; do
    mi=$(( $(json_field "$line" weights) >> 20 ))
    out=$(json_field "$line" out_gbps)
    pct=$(json_field "$line" pct_of_copy)
    value="$out GB/s out, $pct % of copy"
    if [ "$(json_field "$line" verified)" != true ]; then
      row "decode $mi Mi weights" "$value, output WRONG" FAIL
    elif [ "$mi" -eq 256 ]; then
      seen_256=1
      if awk -v p="$pct" -v t="$TARGET_PCT" 'BEGIN {exit !(p >= t)}'; then
        row "decode $mi Mi weights" "$value (target >= $TARGET_PCT %)" PASS
      else
        row "decode $mi Mi weights" "$value (target >= $TARGET_PCT %)" MISS
      fi
    else
      row "decode $mi Mi weights" "$value" info
    fi
  done < <(grep '^{"bench":"df11_decode_cuda"' "$OUT_DIR/bench.log")
  expected=$(tr ',' '\n' <<<"$BENCH_SIZES" | grep -c .)
  got=$(grep -c '^{"bench":"df11_decode_cuda"' "$OUT_DIR/bench.log")
  if [ "$rc" -ne 0 ] || [ "$got" -ne "$expected" ]; then
    row "decode bench" "exit $rc$([ "$rc" -eq 124 ] && echo ' (timed out)'), $got/$expected sizes" FAIL
  fi
  if [ $seen_256 -eq 0 ] && [[ ",$BENCH_SIZES," == *,256,* ]]; then
    row "decode 256 Mi weights" "no result" FAIL
  fi
  # The earlier default kernel (every lookup cut at the window's end) beside the default, on
  # the same units; the target row above is the default's.
  while IFS= read -r line; do
    mi=$(( $(json_field "$line" weights) >> 20 ))
    value="$(json_field "$line" out_gbps) GB/s out, $(json_field "$line" pct_of_copy) % of copy"
    if [ "$(json_field "$line" verified)" != true ]; then
      row "  cut-each kernel $mi Mi" "$value, output WRONG" FAIL
    else
      row "  cut-each kernel $mi Mi" "$value" info
    fi
  done < <(grep '^{"bench":"df11_decode_cuda_cut_each"' "$OUT_DIR/bench.log")
else
  row "decode bench" "$BENCH absent" FAIL
fi
paged_kernel_rows
ew4_kernel_rows
ew4_tc_rows
}

# The paged BF16 KV kernels (the CUDA backend's attention and K/V append) under memcheck: reads
# and writes through block tables stay inside the pools and tables.
paged_kernel_rows() {
  say "paged attention memcheck"
  if [ -z "$SANITIZER" ] || [ ! -f "$BUILD_DIR/$PAGED_TEST" ]; then
    row "paged KV memcheck errors" "compute-sanitizer or $PAGED_TEST absent" FAIL
    return
  fi
  timeout "$(budget "$MEMCHECK_TIMEOUT")" "$SANITIZER" --tool memcheck --error-exitcode 99 \
    --print-limit 50 "$BUILD_DIR/$PAGED_TEST" >"$OUT_DIR/paged-memcheck.log" 2>&1
  rc=$?
  errors=$(sed -n 's/.*ERROR SUMMARY: \([0-9]*\) error.*/\1/p' "$OUT_DIR/paged-memcheck.log" | tail -1)
  if [ "$rc" -eq 0 ] && [ "${errors:-x}" = 0 ] && ! grep -q '^\[  SKIPPED \]' "$OUT_DIR/paged-memcheck.log"; then
    row "paged KV memcheck errors" "0 (tests passed under memcheck)" PASS
  else
    row "paged KV memcheck errors" "${errors:-?} errors, exit $rc$([ "$rc" -eq 124 ] && echo ' (timed out)')" FAIL
  fi
}

# The ew4 kernels: their test under memcheck, then the fused GEMV against cuBLAS BF16.
ew4_kernel_rows() {
  say "ew4 memcheck"
  if [ -z "$SANITIZER" ] || [ ! -f "$BUILD_DIR/$EW4_TEST" ]; then
    row "ew4 memcheck errors" "compute-sanitizer or $EW4_TEST absent" FAIL
  else
    timeout "$(budget "$MEMCHECK_TIMEOUT")" "$SANITIZER" --tool memcheck --error-exitcode 99 \
      --print-limit 50 "$BUILD_DIR/$EW4_TEST" >"$OUT_DIR/ew4-memcheck.log" 2>&1
    rc=$?
    errors=$(sed -n 's/.*ERROR SUMMARY: \([0-9]*\) error.*/\1/p' "$OUT_DIR/ew4-memcheck.log" | tail -1)
    if [ "$rc" -eq 0 ] && [ "${errors:-x}" = 0 ] && ! grep -q '^\[  SKIPPED \]' "$OUT_DIR/ew4-memcheck.log"; then
      row "ew4 memcheck errors" "0 (tests passed under memcheck)" PASS
    else
      row "ew4 memcheck errors" "${errors:-?} errors, exit $rc$([ "$rc" -eq 124 ] && echo ' (timed out)')" FAIL
    fi
  fi
  say "ew4 GEMV bench"
  if [ ! -f "$BUILD_DIR/$EW4_BENCH" ]; then
    row "ew4 GEMV bench" "$EW4_BENCH absent" FAIL
    return
  fi
  timeout "$(budget "$EW4_BENCH_TIMEOUT")" "$BUILD_DIR/$EW4_BENCH" >"$OUT_DIR/ew4-bench.log" 2>&1
  rc=$?
  cat "$OUT_DIR/ew4-bench.log"
  local line n k b speed target status got=0
  while IFS= read -r line; do
    got=$((got + 1))
    n=$(json_field "$line" n) k=$(json_field "$line" k) b=$(json_field "$line" batch)
    speed=$(json_field "$line" speedup)
    case $b in 1) target=1.2 ;; 8) target=1.0 ;; *) target="" ;; esac
    status=info
    if [ "$(json_field "$line" verified)" != true ]; then
      status=FAIL
    elif [ -n "$target" ]; then
      if awk -v r="$speed" -v t="$target" 'BEGIN {exit !(r + 0 >= t)}'; then status=PASS; else status=MISS; fi
    fi
    row "ew4 GEMV ${n}x${k} batch $b" "$(json_field "$line" ew4_us) us vs cuBLAS $(json_field "$line" cublas_us) us: ${speed}x${target:+ (>= $target)}" "$status"
  done < <(grep '^{"bench":"ew4_gemv_cuda"' "$OUT_DIR/ew4-bench.log")
  if [ "$rc" -ne 0 ] || [ "$got" -ne 12 ]; then
    row "ew4 GEMV bench" "exit $rc$([ "$rc" -eq 124 ] && echo ' (timed out)'), $got/12 results" FAIL
  fi
}

# The ew4 tensor-core GEMM against cuBLAS BF16 on resident weights (and ew4 decode + cuBLAS).
ew4_tc_rows() {
  say "ew4 tensor-core GEMM memcheck"
  if [ -z "$SANITIZER" ] || [ ! -f "$BUILD_DIR/$EW4_TC_TEST" ]; then
    row "ew4 TC memcheck errors" "compute-sanitizer or $EW4_TC_TEST absent" FAIL
  else
    timeout "$(budget "$MEMCHECK_TIMEOUT")" "$SANITIZER" --tool memcheck --error-exitcode 99 \
      --print-limit 50 "$BUILD_DIR/$EW4_TC_TEST" \
      --gtest_filter='Ew4GemmTcCuda.DecodedFragments*:Ew4GemmTcCuda.AllEscape*' \
      >"$OUT_DIR/ew4-tc-memcheck.log" 2>&1
    rc=$?
    errors=$(sed -n 's/.*ERROR SUMMARY: \([0-9]*\) error.*/\1/p' "$OUT_DIR/ew4-tc-memcheck.log" | tail -1)
    if [ "$rc" -eq 0 ] && [ "${errors:-x}" = 0 ] && ! grep -q '^\[  SKIPPED \]' "$OUT_DIR/ew4-tc-memcheck.log"; then
      row "ew4 TC memcheck errors" "0 (fragment and all-escape cases under memcheck)" PASS
    else
      row "ew4 TC memcheck errors" "${errors:-?} errors, exit $rc$([ "$rc" -eq 124 ] && echo ' (timed out)')" FAIL
    fi
  fi
  say "ew4 tensor-core GEMM bench"
  if [ ! -f "$BUILD_DIR/$EW4_TC_BENCH" ]; then
    row "ew4 TC GEMM bench" "$EW4_TC_BENCH absent" FAIL
    return
  fi
  timeout "$(budget "$EW4_TC_BENCH_TIMEOUT")" "$BUILD_DIR/$EW4_TC_BENCH" --reps 10 \
    --table "$OUT_DIR/ew4-gemm-table.txt" >"$OUT_DIR/ew4-tc-bench.log" 2>&1
  rc=$?
  cat "$OUT_DIR/ew4-tc-bench.log"
  local line n k b speed target status got=0
  while IFS= read -r line; do
    got=$((got + 1))
    n=$(json_field "$line" n) k=$(json_field "$line" k) b=$(json_field "$line" batch)
    speed=$(json_field "$line" speedup)
    target=""
    [ -n "$b" ] && [ "$b" -le 128 ] && target=1.0
    status=info
    if [ "$(json_field "$line" verified)" != true ]; then
      status=FAIL
    elif [ -n "$target" ]; then
      if awk -v r="$speed" -v t="$target" 'BEGIN {exit !(r + 0 >= t)}'; then status=PASS; else status=MISS; fi
    fi
    row "ew4 TC GEMM ${n}x${k} N=$b" "$(json_field "$line" tc_us) us vs cuBLAS $(json_field "$line" cublas_us) us: ${speed}x${target:+ (>= $target)}; decode+cuBLAS $(json_field "$line" decode_cublas_us) us" "$status"
  done < <(grep '^{"bench":"ew4_gemm_tc_cuda"' "$OUT_DIR/ew4-tc-bench.log")
  if [ "$rc" -ne 0 ] || [ "$got" -ne 20 ]; then
    row "ew4 TC GEMM bench" "exit $rc$([ "$rc" -eq 124 ] && echo ' (timed out)'), $got/20 results" FAIL
  fi
}

if part kernels; then kernel_part; fi
if part e2e; then
  # shellcheck source=gpu-check-e2e.sh
  source "$REPO/scripts/gpu-check-e2e.sh"
  e2e_part
fi
