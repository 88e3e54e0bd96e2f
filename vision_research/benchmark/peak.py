"""This machine's matrix-multiply peak: the yardstick for a network's GFLOP/s.

A convolution network cannot run faster than the dense matrix multiply of its own precision on the same cores
(oneDNN and cuBLAS lower convolutions to the same micro-kernels), so GFLOP/s ÷ matmul peak says how much of the
hardware a backend uses. The peak is measured, not read from a data sheet: the best of ``rounds`` timings of a
square n×n product (2·n³ FLOPs) in the dtype, after a warm-up, with the threads the benchmark uses; n doubles from
256 until one product takes ``MIN_SECONDS`` (up to 4096), so that a CPU without native bf16, where bf16 products
are emulated hundreds of times slower than fp32, is measured in seconds too.
"""

from __future__ import annotations

import time

import torch

from .measurement import synchronize

PEAK_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


MIN_SECONDS, MAX_SIZE = 0.05, 4096


def _best_seconds(size: int, dtype: torch.dtype, device: str, rounds: int) -> float:
    """The shortest of ``rounds`` timed ``size``×``size`` products, after one untimed."""
    generator = torch.Generator().manual_seed(0)
    a, b = (torch.randn(size, size, generator=generator).to(device=device, dtype=dtype) for _ in range(2))
    best = float("inf")
    with torch.inference_mode():
        torch.mm(a, b)
        for _ in range(rounds):
            synchronize(device)
            start = time.perf_counter()
            torch.mm(a, b)
            synchronize(device)
            best = min(best, time.perf_counter() - start)
    return best


def matmul_peak_gflops(dtype: torch.dtype, device: str = "cpu", rounds: int = 5) -> float:
    """The best GFLOP/s of ``a @ b`` for two square matrices of ``dtype`` on ``device``, sized as described above."""
    size = 256
    seconds = _best_seconds(size, dtype, device, 1)
    while seconds < MIN_SECONDS and size < MAX_SIZE:
        size *= 2
        seconds = _best_seconds(size, dtype, device, 1)
    return 2 * size**3 / _best_seconds(size, dtype, device, rounds) / 1e9


def matmul_peaks(device: str = "cpu") -> dict[str, float]:
    """GFLOP/s of the fp32 and bf16 matrix multiply on ``device``, by dtype name."""
    return {name: matmul_peak_gflops(dtype, device) for name, dtype in PEAK_DTYPES.items()}
