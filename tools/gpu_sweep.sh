#!/usr/bin/env bash
# Sweep benchmark on a GPU machine: `steerbench sweep-bench` (30 layers × 5
# multipliers × 50 random prompts of 150 tokens, seeded random weights of the
# default model's shapes) on wgpu, checked against the CPU backend on 8 items, and the same sweep as a PyTorch script runs it (tools/torch_sweep_random.py).
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
# Agreement with the CPU backend on a smaller sweep, then the full sweep timed on wgpu.
/tmp/steerbench sweep-bench --backends cpu,wgpu --items 8 --repeat 1 2>&1 | grep -v XDG_RUNTIME | tee "$out/sweep_check.txt"
/tmp/steerbench sweep-bench --backends wgpu --repeat 2 2>&1 | grep -v XDG_RUNTIME | tee "$out/sweep.txt"
PYTHONUNBUFFERED=1 timeout 240 python3 tools/torch_sweep_random.py 2>&1 | tee "$out/torch_sweep.txt"
