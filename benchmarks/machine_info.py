"""Where a benchmark ran: shared by the scripts in benchmarks/ (each adds its own versions).
The function lives in the library, which `rlto compare` writes into its results."""

from __future__ import annotations

from rlto.compare import machine

__all__ = ["machine"]
