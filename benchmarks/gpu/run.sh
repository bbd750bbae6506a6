#!/usr/bin/env bash
# The GPU check of issue 17, as one script for a GPU machine (see benchmarks/README.md).
#
#   OUT=/some/dir bash benchmarks/gpu/run.sh       # on a machine with a CUDA GPU
#   DRY=1 OUT=/tmp/gpu-dry bash benchmarks/gpu/run.sh   # dry run on a CPU machine
#
# Runs from the repository root without installing kansr (PYTHONPATH), so a bare image
# with torch, numba, numpy, scipy, sympy, networkx, pandas, tqdm, threadpoolctl and pytest
# serves. Writes at most 7 files to $OUT:
#   env.txt        nvidia-smi, Python, torch, CUDA, numba versions
#   test_cuda.log  tests/test_cuda.py on the GPU
#   test_kan.log   the KAN tests (CPU code) on that machine's packages
#   speed.md/.log  fit speed, float32, GPU against the CPU (benchmarks/gpu/speed.py)
#   feynman.md/.log  Feynman equations end to end on the GPU and the CPU (feynman_one.py)
# Each part has its own time limit (seconds, below); a part that fails or runs out of time
# leaves its log and the next part still runs. PARTS="speed feynman" runs only those. DRY=1 runs every part on the CPU with small
# repeats (test_cuda.py with KANSR_TEST_DEVICE=cpu), to catch mistakes in this script.
set -u
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/kansr-gpu}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY=${PY:-python3}
T_TESTS=${T_TESTS:-120} T_SPEED=${T_SPEED:-240} T_FEYN=${T_FEYN:-90} T_KAN=${T_KAN:-45}
PARTS=${PARTS:-tests speed feynman kan}

if [ "${DRY:-0}" = 1 ]; then
    DEV=cpu; export KANSR_TEST_DEVICE=cpu
    SPEED_ARGS="--devices cpu --cpu-threads 1 --repeats 2 --fit-repeats 1 --fit-cap 5"
    FEYN_ARGS="--devices cpu --equation I.12.1"
    KAN_TESTS="tests/test_spline.py"
else
    DEV=cuda
    # 16 CPU threads on the small shapes oversubscribe (tiny BLAS calls): the first run here
    # spent over 100 s on [4, 16, 16, 1] with them; they run on the large shape only.
    SPEED_ARGS="--devices cuda,cpu --cpu-threads 1 --large --large-cpu-threads $(nproc)
                --fit-repeats 2 --fit-cap 25 --profile"
    FEYN_ARGS="--devices cuda,cpu --equation I.12.1,I.6.2a"
    KAN_TESTS="tests/test_kan.py tests/test_fused.py tests/test_lbfgs.py tests/test_spline.py"
fi

part() {  # part NAME SECONDS LOG COMMAND...: run with a time limit, say how it ended
    local name=$1 limit=$2 log=$3; shift 3
    case " $PARTS " in *" $(basename "$log" .log | sed 's/test_cuda/tests/; s/test_kan/kan/') "*) ;;
        *) echo "=== $name: skipped (PARTS=$PARTS)"; return;; esac
    local t0=$SECONDS
    echo "=== $name (limit ${limit}s) ==="
    timeout -k 5 "$limit" "$@" >"$log" 2>&1
    local rc=$?
    echo "=== $name: exit $rc after $((SECONDS - t0))s$([ $rc = 124 ] && echo ' (TIMED OUT)')" \
        | tee -a "$log"
    tail -n 4 "$log"
}

{
    date -u
    nvidia-smi 2>&1 || echo "nvidia-smi: not available"
    $PY - <<'EOF'
import platform, sys
print("python", sys.version.split()[0], platform.machine())
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda,
      "available", torch.cuda.is_available())
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print("gpu", p.name, f"{p.total_memory / 2**30:.0f} GiB", "sm", f"{p.major}.{p.minor}",
          "multiprocessors", p.multi_processor_count)
for name in ("numpy", "numba", "scipy", "sympy", "networkx", "pandas", "pytest"):
    try:
        print(name, __import__(name).__version__)
    except Exception as exc:
        print(name, "MISSING:", exc)
from kansr.kan import kernels
print("kansr compiled kernels:", "numba" if kernels.numba is not None else "OFF (torch ops)")
EOF
} >"$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

part "tests/test_cuda.py on $DEV" "$T_TESTS" "$OUT/test_cuda.log" \
    $PY -m pytest -q -p no:cacheprovider -rA tests/test_cuda.py
part "speed table" "$T_SPEED" "$OUT/speed.log" \
    $PY benchmarks/gpu/speed.py $SPEED_ARGS --out "$OUT/speed.md"
part "Feynman end to end" "$T_FEYN" "$OUT/feynman.log" \
    $PY benchmarks/gpu/feynman_one.py $FEYN_ARGS --out "$OUT/feynman.md"
part "KAN tests (CPU code, this machine's packages)" "$T_KAN" "$OUT/test_kan.log" \
    $PY -m pytest -q -p no:cacheprovider -m "not slow" $KAN_TESTS
echo "=== done; files in $OUT:"
ls -la "$OUT"
