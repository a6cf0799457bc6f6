"""Where a benchmark ran: shared by the scripts in benchmarks/ (each adds its own versions)."""

from __future__ import annotations

import os
import platform
from typing import Any

import jax


def machine() -> dict[str, Any]:
    """Platform, CPUs, Python and JAX versions, JAX device and the load average at the start."""
    device = jax.devices()[0]
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jax_device": f"{device.platform}:{getattr(device, 'device_kind', '')}",
        "load_average_start": list(os.getloadavg()),
    }
