#!/usr/bin/env bash
# One command for a fresh GPU machine (H100 or H200): at most 10 minutes of wall time, with its
# own deadline; every step it cannot fit is skipped and said so. Everything it writes (JSON,
# logs, caches) goes under $OUT; the result is $OUT/gpu_<card>.json (card from the device name),
# to be committed as benchmarks/results/gpu_<card>.json (the README's GPU table is made from it
# by benchmarks/make_readme.py).
#
#   OUT=/tmp/out bash benchmarks/device_check.sh
#
# Steps: versions; the kernel cache warmed in parallel (alamp-fast cuda-warmup); a float32
# subnormal / flush-to-zero probe; pytest tests/cuda/test_gpu.py -m gpu (no -x); the headline
# benchmarks of docs/gpu.md (top-2 margin 1e7 x 100, alamp + alamp-div 1e7 / b = 2000, k-center
# 1e6 x 512 / b = 1000, streamed 1e8 x 100 float16 margin); compute-sanitizer memcheck and
# racecheck on small launches of every kernel.
#
# Environment:
#   OUT                               where results go (required)
#   DEVICE_CHECK_SECONDS              wall-time budget, default 570, at most 600
#   PYTHON                            interpreter, default python3
#   ALAMP_FAST_DEVICE_CHECK_REHEARSAL=1   rehearse on the CUDA emulator (ALAMP_FAST_CUDA=emulate,
#                                     tiny sizes, a few tests, no compute-sanitizer): what CI runs
#   DEVICE_CHECK_PYTEST_K             a -k filter for the pytest step (default: all gpu tests)
set -u -o pipefail

START=$(date +%s)
BUDGET=${DEVICE_CHECK_SECONDS:-570}
if (( BUDGET > 600 )); then BUDGET=600; fi
DEADLINE=$((START + BUDGET))
FINISH_RESERVE=10   # seconds kept for writing the JSON

if [[ -z "${OUT:-}" ]]; then
    echo "device_check: set OUT to the folder for results and logs" >&2
    exit 2
fi
mkdir -p "$OUT/logs" "$OUT/steps" "$OUT/cache"
OUT=$(cd "$OUT" && pwd)
export OUT
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 2
PY=${PYTHON:-python3}

# nothing outside $OUT: no bytecode, no pytest cache, caches redirected
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONDONTWRITEBYTECODE=1
export NUMBA_CACHE_DIR="$OUT/cache/numba"
export ALAMP_FAST_CUDA_CACHE="$OUT/cache/cuda"
export MPLCONFIGDIR="$OUT/cache/matplotlib"
ORIG_XDG_CACHE_HOME=${XDG_CACHE_HOME:-}
export XDG_CACHE_HOME="$OUT/cache/xdg"

REHEARSAL=${ALAMP_FAST_DEVICE_CHECK_REHEARSAL:-0}
if [[ "$REHEARSAL" == "1" ]]; then
    export ALAMP_FAST_CUDA=emulate
    # the emulator's g++ builds are not results: reuse the ones the test suite already made
    export ALAMP_FAST_EMULATE_CACHE=${ALAMP_FAST_EMULATE_CACHE:-${ORIG_XDG_CACHE_HOME:-$HOME/.cache}/alamp_fast/emulate}
    SCALE=tiny
    WARM_ARGS=(--arch sm_90)     # no device to take it from; NVRTC still compiles for real
    DEFAULT_K="test_subnormal or test_fused_alamp_raises or (test_alamp_score_equals_cpu and float32-float32)"
else
    export ALAMP_FAST_CUDA=${ALAMP_FAST_CUDA:-device}
    SCALE=full
    WARM_ARGS=()
    DEFAULT_K=""
fi
PYTEST_K=${DEVICE_CHECK_PYTEST_K:-$DEFAULT_K}
PYTEST_BASE=(-m pytest -o "addopts=" -p no:cacheprovider -q -rfEs --durations=10)

STATUS="$OUT/logs/status.tsv"
: > "$STATUS"
FAILED=0

now() { date +%s; }

# record NAME STATUS SECONDS NOTE
record() {
    printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >> "$STATUS"
    printf '[device_check %4ds] %-12s %-8s %s\n' "$(( $(now) - START ))" "$1" "$2" "$4"
}

# run_step NAME MIN_SECONDS MAX_SECONDS CMD...: runs CMD under a timeout that ends before the
# deadline; skipped when fewer than MIN_SECONDS are left. Output goes to $OUT/logs/NAME.log.
run_step() {
    local name=$1 min=$2 max=$3
    shift 3
    local left=$(( DEADLINE - FINISH_RESERVE - $(now) ))
    if (( left < min )); then
        record "$name" skipped 0 "deadline: ${left} s left, the step needs ${min} s"
        return 0
    fi
    local limit=$(( left < max ? left : max ))
    local t0
    t0=$(now)
    timeout -k 5 "$limit" "$@" > "$OUT/logs/$name.log" 2>&1
    local rc=$?
    local took=$(( $(now) - t0 ))
    if (( rc == 0 )); then
        record "$name" ok "$took" "log: logs/$name.log"
    elif (( rc == 124 || rc == 137 )); then
        record "$name" timeout "$took" "stopped after ${limit} s (deadline), log: logs/$name.log"
        FAILED=1
    else
        record "$name" failed "$took" "exit $rc, log: logs/$name.log"
        tail -n 15 "$OUT/logs/$name.log" | sed 's/^/    /'
        FAILED=1
    fi
    return 0
}

skip_step() { record "$1" skipped 0 "$2"; }

echo "device_check: budget ${BUDGET} s, OUT=$OUT, ALAMP_FAST_CUDA=$ALAMP_FAST_CUDA, scale=$SCALE"

# 1. versions
versions() {
    command -v nvidia-smi > /dev/null && nvidia-smi
    command -v nvcc > /dev/null && nvcc --version
    command -v compute-sanitizer > /dev/null && compute-sanitizer --version
    "$PY" benchmarks/_device_check.py versions
}
export -f versions
export PY
run_step versions 5 60 bash -c versions
grep -E '^ *"(device|cupy|cuda_driver|torch)"' "$OUT/logs/versions.log" || true

# 2. the kernel cache, every source file compiled in parallel
run_step warmup 20 240 "$PY" -m alamp_fast.cli cuda-warmup --json "${WARM_ARGS[@]}"

# 3. subnormal / flush-to-zero probe (kernels against the CPU; PTX of the loader's options)
run_step ftz_probe 10 240 "$PY" benchmarks/_device_check.py ftz

# 4. the GPU tests, all of them (no -x); a crash in one is a failure, the run goes on
XDIST=()
if "$PY" -c "import xdist" 2> /dev/null; then XDIST=(-n 1); fi
K_ARGS=()
if [[ -n "$PYTEST_K" ]]; then K_ARGS=(-k "$PYTEST_K"); fi
# leave the benchmarks and the sanitizers at least 150 s
PYTEST_MAX=$(( DEADLINE - FINISH_RESERVE - 150 - $(now) ))
(( PYTEST_MAX > 300 )) && PYTEST_MAX=300
run_step pytest_gpu 30 "$PYTEST_MAX" "$PY" "${PYTEST_BASE[@]}" "${XDIST[@]}" -m gpu \
    --junitxml="$OUT/logs/pytest_gpu.xml" tests/cuda/test_gpu.py "${K_ARGS[@]}"

# 5. headline benchmarks; cases that cannot finish before the sanitizers' share are skipped
SANITIZER_SHARE=80
command -v compute-sanitizer > /dev/null && [[ "$REHEARSAL" != "1" ]] || SANITIZER_SHARE=0
BENCH_DEADLINE=$(( DEADLINE - FINISH_RESERVE - SANITIZER_SHARE ))
run_step bench 30 $(( BENCH_DEADLINE - $(now) )) "$PY" benchmarks/_device_check.py bench \
    --scale "$SCALE" --deadline "$BENCH_DEADLINE"

# 6. compute-sanitizer on small launches of every kernel (rowwise group + block layouts and
# entropy, alamp, fused alamp, select (keys, radix select, collect), k-center step + recompute)
SAN_K="(test_top2_margin_equals_cpu and 33x3) or (test_alamp_score_equals_cpu and float32-float32) \
or (test_fused_top2_margin_alamp_equals_cpu and float32-float32) or (test_entropy_close_to_cpu and float64) \
or (test_integer_scores_beyond_2_53 and int32) or (test_kcenter_greedy_matches_cpu and 7-float32)"
if [[ "$REHEARSAL" == "1" ]]; then
    skip_step memcheck "rehearsal on the emulator (the emulator runs its own race/bounds checks)"
    skip_step racecheck "rehearsal on the emulator"
elif ! command -v compute-sanitizer > /dev/null; then
    skip_step memcheck "compute-sanitizer not found"
    skip_step racecheck "compute-sanitizer not found"
else
    run_step memcheck 20 50 compute-sanitizer --tool memcheck --error-exitcode 99 \
        --target-processes all "$PY" "${PYTEST_BASE[@]}" -m gpu -x tests/cuda/test_gpu.py -k "$SAN_K"
    run_step racecheck 20 50 compute-sanitizer --tool racecheck --error-exitcode 99 \
        --target-processes all "$PY" "${PYTEST_BASE[@]}" -m gpu -x tests/cuda/test_gpu.py \
        -k "(test_top2_margin_equals_cpu and 33x3-float32) or (test_entropy_close_to_cpu and float64-block) or (test_kcenter_greedy_matches_cpu and 7-float32) or (test_integer_scores_beyond_2_53 and int32)"
fi

# 7. the JSON: steps, status, benchmark rows
"$PY" - "$STATUS" "$START" "$BUDGET" "$REHEARSAL" > "$OUT/logs/status.json" <<'EOF'
import json, sys, time
status, start, budget, rehearsal = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
steps = []
for line in open(status):
    name, state, seconds, note = line.rstrip("\n").split("\t")
    steps.append({"step": name, "status": state, "seconds": int(seconds), "note": note})
print(json.dumps({"started_unix": start, "budget_s": budget, "wall_s": int(time.time()) - start,
                  "rehearsal_on_emulator": rehearsal == "1", "steps": steps,
                  "skipped": [s for s in steps if s["status"] == "skipped"]}, indent=1))
EOF
RESULT=$("$PY" benchmarks/_device_check.py finish --status "$OUT/logs/status.json")
rm -rf "$OUT/cache"
echo "device_check: $(( $(now) - START )) s; result $RESULT"
awk -F'\t' '$2 == "skipped" { print "  skipped: " $1 " (" $4 ")" }' "$STATUS"
exit "$FAILED"
