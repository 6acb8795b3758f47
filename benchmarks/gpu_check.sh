#!/usr/bin/env bash
# Every GPU check in one go, on a machine with a CUDA GPU and tunelab's packages importable:
#   bash benchmarks/gpu_check.sh [OUT_DIR]
# 1. tests/trainables/test_cuda.py: bf16, channels_last, every method's tensors on the device,
#    torch.compile, the per-process memory cap (skipped where no GPU is visible);
# 2. benchmarks/gpu.py: engine vs a plain DataLoader loop on a CIFAR-10-shaped ResNet-18 epoch,
#    and four `tunelab tune --gpus-per-trial 0.25` trials (utilisation, peak memory vs the cap).
# Logs and gpu_results.json go to OUT_DIR (default: benchmarks/). Exit status: the first failure.
set -u -o pipefail
out=${1:-benchmarks}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 RAY_ADDRESS=${RAY_ADDRESS:-local}
status=0
keep_first_failure() { [ "$status" -eq 0 ] && status=$1; return 0; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$out/gpu_machine.txt" 2>&1 || true
python3 -c "import torch, ray, optuna, ray.tune, tunelab.cli; print('torch', torch.__version__, 'ray', ray.__version__, 'optuna', optuna.__version__)" \
    | tee -a "$out/gpu_machine.txt" || keep_first_failure $?
timeout 300 python3 -m pytest -q -s -p no:cacheprovider tests/trainables/test_cuda.py 2>&1 | tee "$out/test_cuda.log" \
    || keep_first_failure $?
timeout 360 python3 benchmarks/gpu.py --out "$out/gpu_results.json" 2>&1 | tee "$out/gpu.log" || keep_first_failure $?
exit "$status"
