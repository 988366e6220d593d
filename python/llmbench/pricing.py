"""GPU prices for the cost columns (USD per GPU-hour, on-demand, single GPU).

These are list prices of common clouds at the time of writing, for orientation only:
pass your own `gpu_hourly_usd` for decisions. The default is the seed workflow's figure for
an NVIDIA L4.
"""

from __future__ import annotations

from ._core import InvalidArgumentError
from ._settings import PRICING

# The engine's default (`Pricing::default()`): an NVIDIA L4 on demand.
DEFAULT_GPU_HOURLY_USD: float = PRICING["usd_per_gpu_hour"]

GPU_PRICES_USD_PER_HOUR: dict[str, float] = {
    "L4": 2.93,
    "T4": 0.95,
    "A10G": 1.21,
    "L40S": 1.96,
    "A100-40GB": 3.67,
    "A100-80GB": 4.10,
    "H100": 6.98,
    "H200": 8.00,
}


def gpu_price(gpu: str | float | None) -> float:
    """USD per GPU-hour for a preset name (case-insensitive) or a number.

    Example:
        >>> gpu_price("h100")
        6.98
        >>> gpu_price(1.5)
        1.5
    """
    if gpu is None:
        return DEFAULT_GPU_HOURLY_USD
    if isinstance(gpu, (int, float)):
        if gpu < 0:
            raise InvalidArgumentError(f"GPU price must be >= 0, got {gpu}")
        return float(gpu)
    key = gpu.strip().upper()
    for name, price in GPU_PRICES_USD_PER_HOUR.items():
        if name.upper() == key:
            return price
    try:
        return gpu_price(float(gpu))
    except (ValueError, InvalidArgumentError):
        pass
    known = ", ".join(GPU_PRICES_USD_PER_HOUR)
    raise InvalidArgumentError(
        f"unknown GPU preset {gpu!r}; known: {known}, or give a price in USD/h"
    )
