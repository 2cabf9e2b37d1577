"""What the GPU-scale benches measure with: the device, peak memory, a matmul peak, synchronised clocks."""

from __future__ import annotations

import gc
import os
import time
from pathlib import Path

import torch

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def offline_environment() -> None:
    """Settings for a GPU box without a network (unless already set): transformers' hub kernels off, since TRL's
    trainer otherwise fetches kernels-community/rotary when it switches the model to training mode and fails
    offline; and no telemetry pings from the hub client."""
    os.environ.setdefault("USE_HUB_KERNELS", "NO")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def pick_device(device: str | None) -> str:
    """"cuda" or "cpu"; None: cuda when there is one."""
    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be cpu or cuda, not {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device cuda: torch sees no GPU here")
    return device


def device_name(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name()
    return f"cpu ({torch.get_num_threads()} threads)"


def sync(device: str) -> None:
    """Wait for the device's queued work, so that a clock read after it covers that work."""
    if device == "cuda":
        torch.cuda.synchronize()


def reset_peak(device: str) -> None:
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    else:  # Linux: writing 5 to clear_refs resets the process's peak resident set (VmHWM)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")


def peak_mb(device: str) -> float:
    """Peak since `reset_peak`: torch's allocated memory on a GPU, the process's resident set on the CPU."""
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def release(device: str) -> None:
    """Free what the previous run left (its trainer's reference cycles), so the next run's peak is its own."""
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()


def matmul_peak_flops(device: str = "cpu", dtype: torch.dtype = torch.float32, n: int | None = None,
                      repeats: int = 10) -> float:
    """The rate of an n x n matmul in `dtype` on `device`: what its matmul units deliver (MFU's denominator).
    n: 8192 on a GPU (an H200 gives 782-806 TFLOP/s in bf16 there), 1024 on a CPU."""
    n = n or (8192 if device == "cuda" else 1024)
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    a @ b  # warm-up
    sync(device)
    began = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync(device)
    return 2 * n**3 * repeats / (time.perf_counter() - began)
