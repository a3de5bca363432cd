#!/usr/bin/env bash
# Backend check on a GPU machine: the wgpu backend against the CPU backend on
# seeded random weights of the default model's shapes, plus forward timings,
# and the same forward in PyTorch (eager, f32 and bf16) for comparison.
#
# Expects a stripped, gzipped `steerbench` binary at gpubin/steerbench.gz and
# the Vulkan loader packages in .gl/ (see the device notes in tools/README.md).
set -uo pipefail
cd "$(dirname "$0")/.."
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
if [ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ]; then
    export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
fi
gunzip -c gpubin/steerbench.gz > /tmp/steerbench && chmod +x /tmp/steerbench
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
out="${OUT:-/tmp}"
/tmp/steerbench backends --batch 8 --seq 128 --repeat 5 2>&1 | grep -v XDG_RUNTIME | tee "$out/backends_8x128.txt"
/tmp/steerbench backends --batch 64 --seq 128 --repeat 5 2>&1 | grep -v XDG_RUNTIME | tee "$out/backends_64x128.txt"
PYTHONUNBUFFERED=1 python3 tools/torch_forward_random.py --batches 8 64 --seq 128 2>&1 | tee "$out/torch.txt"
