"""What this machine's CPU can do, from numpy's runtime detection (which every platform has)."""

from __future__ import annotations

__all__ = ["cpu_has"]


def cpu_has(feature: str) -> bool:
    """Whether the CPU runs the instructions numpy names `feature` ("AVX512F", "AVX512BF16", ...)."""
    try:
        from numpy._core._multiarray_umath import __cpu_features__
    except ImportError:  # numpy < 2
        from numpy.core._multiarray_umath import __cpu_features__
    return bool(__cpu_features__.get(feature))
