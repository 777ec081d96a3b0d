#!/usr/bin/env bash
# GPU check: everything in this project that needs CUDA, in one command, in under 8 minutes.
#
#   benchmarks/gpu_check.sh            (from anywhere; PYTHON=... to use another interpreter)
#
# 1. the tests that need CUDA (pytest marker `cuda`, test/test_cuda.py);
# 2. the node benchmark on CUDA (benchmarks/bench_node.py --cuda-only): PyTorch in float32 and
#    float16, and onnxruntime's CUDAExecutionProvider (needs onnxruntime-gpu; said so if missing);
# 3. training steps with AMP, images/s (benchmarks/bench_train.py, ours only, 640x192 batch 12);
# 4. a torchrun training run of a few steps on a fresh sample recording (sample_recording, then
#    `python -m torch.distributed.run --nproc_per_node=1 -m mono_depth_ros_training.cli`, i.e.
#    torchrun with this interpreter). GPU_CHECK_NPROC=2 on a machine with 2+ GPUs also exercises
#    NCCL and DistributedDataParallel (one process does not join a process group).
#
# Ends with one summary table (check, result, PASS/FAIL/SKIP); the exit status is 1 when a check
# failed. Stops at once, exit status 2, when no CUDA device is visible. Work files (logs, model files,
# the recording, the run) go to a temporary directory, removed on success and kept on failure.
# Each step has a time limit; together with start-up they stay under 8 minutes.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x "$REPO/.venv/bin/python" ]]; then PYTHON="$REPO/.venv/bin/python"; else PYTHON="$(command -v python3 || true)"; fi
fi
if [[ -z "$PYTHON" || ! -x "$PYTHON" ]]; then
    echo "gpu_check: no Python found: run 'make setup' (creates .venv) or set PYTHON=/path/to/python" >&2
    exit 2
fi
NPROC="${GPU_CHECK_NPROC:-1}"
TESTS="${GPU_CHECK_TESTS:-test/test_cuda.py}"

# ---- 0. fail fast without CUDA -------------------------------------------------------------------
probe_status=0
GPU="$("$PYTHON" - <<'PY'
import os
import sys

try:
    import torch
except ImportError as error:
    print(f"gpu_check: PyTorch cannot be imported by {sys.executable} ({error}); run 'make setup' or set PYTHON",
          file=sys.stderr)
    sys.exit(2)
if not torch.cuda.is_available():
    print(
        f"gpu_check: no CUDA device is visible: torch {torch.__version__} (built for CUDA {torch.version.cuda}) "
        f"sees none (CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}). This check needs "
        "a machine with an NVIDIA GPU, its driver, and a CUDA build of PyTorch (pytorch.org); nothing was run.",
        file=sys.stderr,
    )
    sys.exit(2)
props = torch.cuda.get_device_properties(0)
print(f"{torch.cuda.device_count()} x {props.name} ({props.total_memory / 2**30:.0f} GiB), torch {torch.__version__}, "
      f"CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}")
PY
)" || probe_status=$?
if [[ $probe_status -ne 0 ]]; then
    exit 2
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")"
FAILED=0
finish() {
    local status=$?
    if [[ $status -eq 0 && $FAILED -eq 0 && -z "${GPU_CHECK_KEEP:-}" ]]; then
        rm -rf "$WORK"
    else
        echo "gpu_check: work files and logs kept in $WORK" >&2
    fi
}
trap finish EXIT

echo "gpu_check: $GPU"
echo "gpu_check: work files in $WORK"

CHECKS=()
RESULTS=()
VERDICTS=()
row() {  # check, result, PASS|FAIL|SKIP|n/a
    CHECKS+=("$1")
    RESULTS+=("$2")
    VERDICTS+=("$3")
    if [[ "$3" == FAIL ]]; then FAILED=1; fi
}

# run_step NAME LIMIT_S COMMAND...: runs with a time limit, output to $WORK/NAME.log; prints the exit status.
run_step() {
    local name=$1 limit=$2 status=0
    shift 2
    local start=$SECONDS
    timeout --kill-after=10 "$limit" "$@" >"$WORK/$name.log" 2>&1 || status=$?
    echo "gpu_check:   $name: exit status $status after $((SECONDS - start)) s" >&2
    if [[ $status -ne 0 ]]; then
        if [[ $status -eq 124 || $status -eq 137 ]]; then echo "gpu_check:   $name ran past its ${limit} s limit" >&2; fi
        tail -n 15 "$WORK/$name.log" | sed 's/^/    | /' >&2
    fi
    echo "$status"
}

# table_cell LOG TITLE_WORD ROW_START COLUMN: a cell of a Markdown table that a benchmark printed.
table_cell() {
    "$PYTHON" - "$@" <<'PY'
import sys

log, title, row_start, column = sys.argv[1:5]
lines = open(log, encoding="utf-8", errors="replace").read().splitlines()
header = None
in_table = False
for line in lines:
    if line.startswith("**"):
        in_table = title in line
        header = None
        continue
    if not in_table or not line.startswith("|"):
        continue
    cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
    if header is None:
        header = cells
    elif cells[0].startswith(row_start) and column in header:
        print(cells[header.index(column)])
        break
PY
}

is_number() { [[ "$1" =~ ^[0-9]+(\.[0-9]+)?$ ]]; }

# ---- 1. tests that need CUDA ---------------------------------------------------------------------
echo "gpu_check: [1/4] tests that need CUDA ($TESTS, marker cuda)" >&2
status=$(run_step tests 150 "$PYTHON" -m pytest $TESTS -m cuda -q -rs -p no:cacheprovider)
counts="$(grep -Eo '[0-9]+ (passed|failed|skipped|error|errors|deselected)' "$WORK/tests.log" | paste -sd, - | sed 's/,/, /g' || true)"
note=""
if grep -q 'no CUDAExecutionProvider' "$WORK/tests.log"; then
    note=" (the onnxruntime test skipped: onnxruntime-gpu is not installed)"
fi
if [[ $status -eq 0 ]] && grep -Eq '[0-9]+ passed' "$WORK/tests.log"; then
    row "tests marked cuda" "${counts:-?}$note" PASS
else
    row "tests marked cuda" "${counts:-no result} (exit status $status; log: $WORK/tests.log)" FAIL
fi

# ---- 2. node benchmark on CUDA -------------------------------------------------------------------
echo "gpu_check: [2/4] node benchmark on CUDA (bench_node.py --cuda-only)" >&2
status=$(run_step bench_node 100 "$PYTHON" benchmarks/bench_node.py --cuda-only --frames 50 --warmup 10 --markdown)
for precision in "PyTorch float32" "PyTorch float16"; do
    forward="$(table_cell "$WORK/bench_node.log" CUDA "$precision" "forward fps" || true)"
    predict="$(table_cell "$WORK/bench_node.log" CUDA "$precision" "predict fps" || true)"
    if [[ $status -eq 0 ]] && is_number "$forward" && is_number "$predict"; then
        row "node, $precision" "forward $forward fps, RGB to depth $predict fps (640x480 camera, 640x192 network)" PASS
    else
        row "node, $precision" "no figure (exit status $status; log: $WORK/bench_node.log)" FAIL
    fi
done
onnx_label="$(grep -Eo '^\| onnxruntime CUDA float32[^|]*' "$WORK/bench_node.log" | sed 's/^| //; s/ *$//' | head -n 1 || true)"
forward="$(table_cell "$WORK/bench_node.log" CUDA "onnxruntime CUDA float32" "forward fps" || true)"
predict="$(table_cell "$WORK/bench_node.log" CUDA "onnxruntime CUDA float32" "predict fps" || true)"
if [[ $status -eq 0 ]] && is_number "$forward" && is_number "$predict"; then
    row "node, onnxruntime CUDA float32" "forward $forward fps, RGB to depth $predict fps" PASS
elif [[ $status -eq 0 && "$onnx_label" == *"not installed"* ]]; then
    row "node, onnxruntime CUDA float32" "not measured: ${onnx_label#onnxruntime CUDA float32: }" SKIP
elif [[ $status -eq 0 && -n "$onnx_label" ]]; then
    row "node, onnxruntime CUDA float32" "${onnx_label#onnxruntime CUDA float32: }" FAIL
else
    row "node, onnxruntime CUDA float32" "no figure (exit status $status; log: $WORK/bench_node.log)" FAIL
fi
row "node, onnxruntime float16" ".onnx models run in float32 (half_precision is ignored for them; float16: TensorRT)" n/a

# ---- 3. training steps with AMP ------------------------------------------------------------------
echo "gpu_check: [3/4] training steps with AMP (bench_train.py, 640x192 batch 12)" >&2
status=$(run_step bench_train 100 "$PYTHON" benchmarks/bench_train.py --device cuda --monodepth2 none \
    --no-loss-check --no-data-loading --steps 10 --warmup 3 --sizes 640x192x12 --markdown)
rate="$(table_cell "$WORK/bench_train.log" "Training throughput" "640x192" "ours" || true)"
precision="$(table_cell "$WORK/bench_train.log" "Training throughput" "640x192" "precision (Monodepth2 / ours)" || true)"
if [[ $status -eq 0 ]] && is_number "$rate" && [[ "$precision" == *AMP* ]]; then
    row "training step, AMP" "$rate images/s (640x192, batch 12, median of 10 steps; ${precision#* / })" PASS
else
    row "training step, AMP" "no figure (exit status $status; log: $WORK/bench_train.log)" FAIL
fi

# ---- 4. torchrun training run --------------------------------------------------------------------
echo "gpu_check: [4/4] torchrun --nproc_per_node=$NPROC training run on a sample recording" >&2
STEPS=40
status=$(run_step sample_recording 40 "$PYTHON" -m mono_depth_ros.simulation.cli --out "$WORK/recording" --frames 120 --quiet)
if [[ $status -ne 0 ]]; then
    row "torchrun, $NPROC GPU(s)" "sample_recording failed (exit status $status; log: $WORK/sample_recording.log)" FAIL
else
    start=$SECONDS
    status=$(run_step torchrun 150 "$PYTHON" -m torch.distributed.run --standalone --nproc_per_node="$NPROC" \
        -m mono_depth_ros_training.cli --bag "$WORK/recording" --out "$WORK/run" device=cuda \
        data.width=320 data.height=192 data.cache_dir="$WORK/cache" optim.batch_size=8 optim.max_steps=$STEPS \
        log.image_every=0 log.checkpoint_every=0)
    seconds=$((SECONDS - start))
    # The trainer's progress line ends with "img_s=..., loss=..."; the last line printed is the model file.
    rate="$(tr '\r' '\n' <"$WORK/torchrun.log" | grep -Eo 'img_s=[0-9.]+' | tail -n 1 | cut -d= -f2 || true)"
    loss="$(tr '\r' '\n' <"$WORK/torchrun.log" | grep -Eo 'loss=[^,]+' | tail -n 1 | cut -d= -f2 || true)"
    if [[ $status -eq 0 && -f "$WORK/run/model.safetensors" ]] && is_number "$loss"; then
        row "torchrun, $NPROC GPU(s)" "$STEPS steps (320x192, batch 8 per GPU) in ${seconds} s with start-up; ${rate:-?} images/s; loss $loss; model file written" PASS
    else
        row "torchrun, $NPROC GPU(s)" "exit status $status, loss ${loss:-?}, model file $([[ -f "$WORK/run/model.safetensors" ]] && echo written || echo missing) (log: $WORK/torchrun.log)" FAIL
    fi
fi

# ---- summary -------------------------------------------------------------------------------------
width_check=5
width_result=6
for i in "${!CHECKS[@]}"; do
    if (( ${#CHECKS[$i]} > width_check )); then width_check=${#CHECKS[$i]}; fi
    if (( ${#RESULTS[$i]} > width_result )); then width_result=${#RESULTS[$i]}; fi
done
echo
echo "GPU check: $GPU ($SECONDS s)"
printf "%-${width_check}s  %-${width_result}s  %s\n" "check" "result" "verdict"
printf "%-${width_check}s  %-${width_result}s  %s\n" "$(printf '%*s' "$width_check" '' | tr ' ' -)" \
    "$(printf '%*s' "$width_result" '' | tr ' ' -)" "-------"
for i in "${!CHECKS[@]}"; do
    printf "%-${width_check}s  %-${width_result}s  %s\n" "${CHECKS[$i]}" "${RESULTS[$i]}" "${VERDICTS[$i]}"
done
if [[ $FAILED -ne 0 ]]; then
    echo "gpu_check: a check FAILED (logs in $WORK)" >&2
    exit 1
fi
