"""`vidface env`: versions, encoders, GPU and weight cache, for bug reports."""

from __future__ import annotations

import argparse

from vidface.commands.options import add_logging_flags

ENCODERS = ("libx264", "libx265", "libsvtav1", "libaom-av1", "libvpx-vp9", "prores_ks", "ffv1",
            "h264_nvenc", "hevc_nvenc", "av1_nvenc", "aac", "libopus", "flac")
"""Encoders worth knowing about; `vidface env` says which this PyAV build has."""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "env", help="print versions, encoders, GPU and weight cache (for bug reports)",
        description="Print the versions of vidface and its libraries, the encoders this build has, "
                    "the GPU, and where model weights are cached.")
    add_logging_flags(parser)


def run(args: argparse.Namespace) -> int:
    print("\n".join(f"{key}: {value}" for key, value in environment().items()))
    return 0


def environment() -> dict[str, str]:
    """Name → value lines describing this installation."""
    import platform
    import av

    import vidface
    from vidface.provenance import package_version

    report = {
        "vidface": vidface.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "av (PyAV)": av.__version__,
        "ffmpeg libraries": ", ".join(f"{name} {'.'.join(map(str, v))}"
                                      for name, v in sorted(av.library_versions.items())),
        "encoders": ", ".join(name + (" (needs an NVIDIA GPU)" if name.endswith("_nvenc") else "")
                              for name in ENCODERS if name in av.codecs_available) or "none",
        "missing encoders": ", ".join(name for name in ENCODERS if name not in av.codecs_available) or "none",
    }
    for name in ("torch", "diffusers", "peft", "numpy", "opencv-python"):
        report[name] = package_version(name)
    report.update(_gpu())
    try:
        from huggingface_hub import constants

        report["weight cache"] = constants.HF_HUB_CACHE
        report["hub offline"] = str(bool(constants.HF_HUB_OFFLINE))
    except ImportError:
        report["weight cache"] = "huggingface_hub not installed"
    return report


def _gpu() -> dict[str, str]:
    try:
        import torch
    except ImportError:
        return {"gpu": "unknown (torch not installed)"}
    info = {"torch CUDA build": torch.version.cuda or "none"}
    if torch.cuda.is_available():
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        info["gpu"] = "; ".join(names)
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        info["gpu"] = "Apple MPS"
    else:
        info["gpu"] = "none (CPU only)"
    from vidface.models.options import DTYPES, resolve_dtype, torch_dtype

    on_cpu = resolve_dtype("auto", torch.device("cpu"))
    info["cpu model precision"] = next(name for name in DTYPES if torch_dtype(name) == on_cpu) + " with --dtype auto"
    return info
