"""What this machine can do: its CPU's instructions, from numpy's runtime detection (which every
platform has), and whether a GPU may be attached, without importing torch."""

from __future__ import annotations

import glob
import sys

__all__ = ["cpu_has", "may_have_gpu"]

GPU_DEVICE_FILES = ("/dev/nvidia[0-9]*", "/dev/kfd", "/dev/dxg")
"""Linux device files without which no GPU is usable: NVIDIA's driver, ROCm's, WSL's."""


def cpu_has(feature: str) -> bool:
    """Whether the CPU runs the instructions numpy names `feature` ("AVX512F", "AVX512BF16", ...)."""
    try:
        from numpy._core._multiarray_umath import __cpu_features__
    except ImportError:  # numpy < 2
        from numpy.core._multiarray_umath import __cpu_features__
    return bool(__cpu_features__.get(feature))


def may_have_gpu() -> bool:
    """False only where torch cannot see a GPU: Linux without a GPU driver's device file
    (`GPU_DEVICE_FILES`). Telling so takes no torch import, so a CPU run decodes and detects
    while its model's thread imports torch; elsewhere torch must be asked."""
    if not sys.platform.startswith("linux"):
        return True
    return any(glob.glob(pattern) for pattern in GPU_DEVICE_FILES)
