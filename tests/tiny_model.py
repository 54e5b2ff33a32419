"""A tiny random OSDFace for tests, written once per test session in the official file layout
(tools/make_tiny_osdface.py) and loaded through the same code path as the real weights.

Use in a test module::

    from tiny_model import TINY_FACE, tiny_osdface_model  # noqa: F401 (pytest fixtures)

    def test_something(tiny_osdface_model):
        restored = tiny_osdface_model.restore(torch.rand(2, 3, TINY_FACE, TINY_FACE))

``tiny_osdface`` gives the paths (``.release`` folder, ``.base`` folder); ``tiny_osdface_options``
the ModelOptions that load it on the CPU in float32; ``tiny_osdface_model`` the loaded model.
The tiny model's face size is TINY_FACE (64) pixels; any multiple of 8 works.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from vidface.models.options import ModelOptions

TINY_FACE = 64
_TOOL = Path(__file__).resolve().parents[1] / "tools" / "make_tiny_osdface.py"


def _tool():
    name = "make_tiny_osdface"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, _TOOL)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def write_tiny_osdface(out_dir: Path, lora_style: str = "peft", embedder: str = "tiny", seed: int = 0):
    """Write a tiny model under out_dir; returns paths with .release and .base."""
    return _tool().write_tiny_osdface(out_dir, lora_style=lora_style, embedder=embedder, seed=seed)


def tiny_options(paths, **overrides) -> ModelOptions:
    """ModelOptions that load the tiny model at ``paths`` on the CPU in float32."""
    settings = {"weights": str(paths.release), "base": str(paths.base), "device": "cpu", "dtype": "fp32"}
    settings.update(overrides)
    return ModelOptions(**settings)


def smooth_faces(count: int, seed: int = 0, size: int = TINY_FACE) -> torch.Tensor:
    """Smooth random RGB images in [0, 1] (low-frequency noise, like blurry faces)."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(count, 3, size // 16, size // 16, generator=generator)
    return F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)


_written: dict[str, object] = {}
_loaded: dict[str, object] = {}


def _session_tiny(tmp_path_factory):
    if "paths" not in _written:
        _written["paths"] = write_tiny_osdface(tmp_path_factory.mktemp("tiny-osdface"))
    return _written["paths"]


# The fixtures do not depend on each other, so a test module imports only those it uses.
@pytest.fixture(scope="session")
def tiny_osdface(tmp_path_factory):
    return _session_tiny(tmp_path_factory)


@pytest.fixture(scope="session")
def tiny_osdface_options(tmp_path_factory) -> ModelOptions:
    return tiny_options(_session_tiny(tmp_path_factory))


@pytest.fixture(scope="session")
def tiny_osdface_model(tmp_path_factory):
    """The tiny OSDFace built on the CPU in float32 (shared: do not modify it); built from the
    weights, not a ready model, so it takes any batch and face size."""
    from vidface.models.loading import load_osdface

    if "model" not in _loaded:
        _loaded["model"] = load_osdface(tiny_options(_session_tiny(tmp_path_factory)), ready=False)
    return _loaded["model"]
