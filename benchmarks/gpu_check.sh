#!/usr/bin/env bash
# One-shot check on a GPU machine (no internet): environment, the gpu-marked tests, then
# on CUDA, most telling first: the short speed.py rows (training step and inference
# against the reference recipe), stream_detect.py, fast_inference.py, and speed.py's
# torch.compile section with whatever time is left. Every step is time-boxed so the
# whole script ends within TOTAL_S seconds (default 560, about 9.5 min) whatever hangs;
# logs go to $OUT.
#
#   OUT=/some/folder bash benchmarks/gpu_check.sh
#
# Files written to $OUT (8 at most): env.log, pytest_gpu.log, steps.log (the logs of
# steps 3-6), speed_cuda.md, stream_detect_cuda.md, fast_inference_cuda.md,
# speed_cuda_compile.md, summary.txt. PYTEST_S, SPEED_S and SPEED_ARGS (default: training
# rows 0-4 and inference rows 0-3 of speed.py), STREAM_S, FAST_S, FAST_STEPS, COMPILE_ARGS
# (default '--only compile --compile-what train') and TOTAL_S tune it;
# DISYRE_GIT_COMMIT names the commit: the full one (git rev-parse HEAD of the tree copied).
set -u

cd "$(dirname "$0")/.." || exit 1
OUT=${OUT:-benchmarks/results/gpu_check}
mkdir -p "$OUT"
TOTAL_S=${TOTAL_S:-560}
PYTEST_S=${PYTEST_S:-100}
PY=${PYTHON:-$(command -v python || command -v python3)}
START=$(date +%s)
left() { echo $((TOTAL_S - ($(date +%s) - START))); }

# Import the package from the tree itself: nothing is installed, nothing downloaded.
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1

summary() { echo "$*" | tee -a "$OUT/summary.txt"; }
: >"$OUT/summary.txt"
summary "gpu_check: $(date -u +%FT%TZ), repo $(git rev-parse --short HEAD 2>/dev/null || echo unknown), budget ${TOTAL_S}s"

# ---------------------------------------------------------------- 1. environment
{
    echo "== nvidia-smi"
    timeout 20 nvidia-smi 2>&1 | head -20 || echo "nvidia-smi unavailable"
    echo "== python: $PY"
    timeout 90 "$PY" - <<'EOF'
import importlib
import sys

print(sys.version)
need = ["torch", "numpy", "scipy", "sklearn", "nibabel", "tqdm", "joblib", "pytest"]
extra = ["hypothesis", "numpydoc", "pyod", "triton"]
missing = []
for name in need + extra:
    try:
        mod = importlib.import_module(name)
        print(f"  ok       {name} {getattr(mod, '__version__', '')}")
    except Exception as exc:  # report every missing piece, do not stop at the first
        print(f"  MISSING  {name}: {type(exc).__name__}: {exc}")
        missing.append(name)
print("missing required:", [m for m in missing if m in need] or "none")
print("missing optional:", [m for m in missing if m in extra] or "none")
import torch

print("torch", torch.__version__, "cuda build", torch.version.cuda)
print("cuda available:", torch.cuda.is_available())
if torch.cuda.is_available():
    print("device:", torch.cuda.get_device_name(0), "bf16:", torch.cuda.is_bf16_supported())
import disyre_sk

print("disyre_sk", disyre_sk.__version__, "from", disyre_sk.__file__)
EOF
    echo "env check rc=$?"
} >"$OUT/env.log" 2>&1
cat "$OUT/env.log"
grep -q "cuda available: True" "$OUT/env.log" || summary "WARNING: torch sees no CUDA device"

# ---------------------------------------------------------------- 2. gpu-marked tests
if "$PY" -c "import pytest" 2>/dev/null; then
    # --continue-on-collection-errors: a test module that needs an absent optional
    # package (hypothesis, numpydoc, pyod) must not stop the gpu tests of the others.
    timeout -k 5 "$PYTEST_S" "$PY" -m pytest -m gpu -q -p no:cacheprovider \
        --continue-on-collection-errors tests >"$OUT/pytest_gpu.log" 2>&1
    rc=$?
    tail -25 "$OUT/pytest_gpu.log"
    summary "pytest -m gpu: rc=$rc ($([ $rc -eq 124 ] && echo "timed out after ${PYTEST_S}s" || tail -1 "$OUT/pytest_gpu.log"))"
else
    echo "pytest is not installed: gpu tests not run" | tee "$OUT/pytest_gpu.log"
    summary "pytest -m gpu: not run (no pytest)"
fi

# step LABEL LIMIT_S NEED_S TAIL CMD...: run CMD under a hard `timeout LIMIT_S` when more
# than NEED_S seconds of TOTAL_S are left, its output appended to steps.log (the last
# TAIL lines echoed), and one line in summary.txt.
step() {
    local label=$1 limit=$2 need=$3 lines=$4
    shift 4
    if [ "$(left)" -le "$need" ]; then
        summary "$label: not run, only $(left)s left"
        return
    fi
    timeout -k 10 "$limit" "$@" >>"$OUT/steps.log" 2>&1
    local rc=$?
    tail -"$lines" "$OUT/steps.log"
    summary "$label: rc=$rc, limit ${limit}s$([ $rc -eq 124 ] && echo ' (timed out)')"
}

# ---------------------------------------------------------------- 3. speed, the target rows
# The package's training step and inference against the reference recipe (bf16 autocast
# with GroupNorm in fp32), in one run: the ratios the targets are about.
SPEED_S=${SPEED_S:-110}
# shellcheck disable=SC2086
step "speed.py (target rows)" "$SPEED_S" $((SPEED_S + 20)) 30 \
    "$PY" benchmarks/speed.py --device cuda --budget-s $((SPEED_S - 25)) \
    ${SPEED_ARGS:---only train-net infer --train-variants 1 2 3 4 --infer-variants 1 2 3} \
    --out "$OUT/speed_cuda.md"

# ---------------------------------------------------------------- 4. streaming detect
STREAM_S=${STREAM_S:-90}
step "stream_detect.py" "$STREAM_S" $((STREAM_S + 20)) 12 \
    "$PY" benchmarks/stream_detect.py --device cuda --budget-s $((STREAM_S - 15)) \
    --out "$OUT/stream_detect_cuda.md"

# ---------------------------------------------------------------- 5. trained-model inference
# Accuracy and speed of every inference setting on two trained models, the patch model
# and the slice model (fast GPU inference); the rows come most telling first. 210 s: at
# 260 s (fec7496, H200) the compile step was left 176 s and its first compilation did not
# finish; the rows this cuts are the last, least telling ones.
FAST_S=${FAST_S:-210}
step "fast_inference.py" "$FAST_S" $((FAST_S + 40)) 40 \
    "$PY" benchmarks/fast_inference.py --device cuda --n-steps "${FAST_STEPS:-300}" \
    --budget-s $((FAST_S - 140)) --out "$OUT/fast_inference_cuda.md"

# ---------------------------------------------------------------- 6. torch.compile
# What is left of TOTAL_S, less a margin; speed.py gets 45 s less than its hard limit
# to finish the variant it is in and write its tables (its compile child needs 75 s,
# so the step needs 130 s left).
hard=$(($(left) - 10))
[ "$hard" -gt 405 ] && hard=405
# shellcheck disable=SC2086
step "speed.py (compile)" "$hard" 129 60 \
    "$PY" benchmarks/speed.py --device cuda --budget-s $((hard - 45)) \
    ${COMPILE_ARGS:---only compile --compile-what train} --out "$OUT/speed_cuda_compile.md"

summary "gpu_check: done in $(($(date +%s) - START))s; files in $OUT: $(ls "$OUT" | tr '\n' ' ')"
