"""The ready model (vidface.models.ready): the networks exported once, loaded later with torch
alone, restoring the same faces; the static batch pads its last batch."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from tiny_model import smooth_faces, tiny_osdface, tiny_osdface_model, tiny_osdface_options  # noqa: F401
from vidface.models import ready
from vidface.models.graph_file import GraphNetwork
from vidface.models.loading import load_osdface
from vidface.models.osdface import OSDFace
from vidface.weights import WeightsLocation


@pytest.fixture
def ready_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cache folder of the test's own, so each test starts without ready models."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "ready_cache"))
    return tmp_path / "ready_cache" / "vidface" / "ready"


def _ready_folders(folder: Path) -> list[Path]:
    return sorted(path for path in folder.iterdir() if path.is_dir()) if folder.is_dir() else []


def test_ready_model_restores_as_the_built_model(ready_cache, tiny_osdface_options, tiny_osdface_model):
    options = replace(tiny_osdface_options, batch_size=3)
    made = load_osdface(options)  # builds and exports
    [folder] = _ready_folders(ready_cache)
    assert sorted(path.name for path in folder.iterdir()) == [
        "decoder.json", "decoder.safetensors", "embedder.safetensors", "encoder.json", "encoder.safetensors",
        "model.json", "noise.json", "noise.safetensors"]
    loaded = load_osdface(options)  # from the folder
    assert _ready_folders(ready_cache) == [folder]
    faces = smooth_faces(5, seed=11)  # a batch of 3 and one of 2, padded to 3
    assert isinstance(loaded.noise, GraphNetwork) and not isinstance(made.noise, GraphNetwork)
    for model in (made, loaded):
        assert model.static_batch and model.batch_size == 3
    restored = loaded.restore(faces)
    assert torch.equal(made.restore(faces), restored)  # the export runs the built model's operations
    built = tiny_osdface_model.restore(faces)
    # Exported programs run the same kernels; the batches differ (3 + 3 padded against 5).
    assert (restored - built).abs().max() < 1e-3
    assert (restored[0] - restored[1]).abs().mean() > 0.01


def test_padded_last_batch_gives_the_unpadded_faces(tiny_osdface_model):
    model = tiny_osdface_model
    padded = OSDFace(model.encoder, model.noise, model.decoder, model.embedder, alpha_prod=model.alpha_prod,
                     scaling_factor=model.scaling_factor, size_multiple=model.size_multiple, batch_size=4,
                     static_batch=True)
    seen: list[int] = []
    hook = model.noise.register_forward_pre_hook(lambda _module, inputs: seen.append(inputs[0].shape[0]))
    try:
        faces = smooth_faces(3, seed=12)
        restored = padded.restore(faces)
        assert seen == [4]
        six = padded.restore(smooth_faces(6, seed=13))
        assert seen == [4, 4, 4] and six.shape[0] == 6
        unpadded = model.restore(faces)
    finally:
        hook.remove()
    assert restored.shape == unpadded.shape
    assert (restored - unpadded).abs().max() < 1e-3  # batch-size-dependent CPU kernels only


def test_a_ready_model_loads_without_diffusers(ready_cache, tiny_osdface, tiny_osdface_options):
    """A later run loads the ready model with torch alone: diffusers, peft and torch's export and
    compiler stack (dynamo, inductor, sympy) stay unimported."""
    load_osdface(tiny_osdface_options)
    code = ("import sys\n"
            "from vidface.models.loading import load_osdface\n"
            "from vidface.models.options import ModelOptions\n"
            f"model = load_osdface(ModelOptions(weights={str(tiny_osdface.release)!r}, base={str(tiny_osdface.base)!r}, "
            "device='cpu', dtype='fp32'))\n"
            "print(model.static_batch, [name for name in ('diffusers', 'peft', 'torch._dynamo', 'torch._inductor', "
            "'sympy', 'torch.export.pt2_archive') if name in sys.modules])\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "XDG_CACHE_HOME": str(ready_cache.parent.parent)})
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip().splitlines()[-1] == "True []"


def test_a_damaged_ready_model_is_made_again(ready_cache, tiny_osdface_options, caplog):
    first = load_osdface(tiny_osdface_options)
    [folder] = _ready_folders(ready_cache)
    faces = smooth_faces(2, seed=14)
    expected = first.restore(faces)
    (folder / "noise.safetensors").write_bytes((folder / "noise.safetensors").read_bytes()[:1000])
    with caplog.at_level(logging.WARNING, logger="vidface.models.ready"):
        again = load_osdface(tiny_osdface_options)
    assert "cannot be loaded" in caplog.text and "made again" in caplog.text
    assert torch.equal(again.restore(faces), expected)
    assert (folder / "noise.safetensors").stat().st_size > 1000


def test_a_model_that_cannot_be_exported_is_built_each_time(ready_cache, tiny_osdface_options, tiny_osdface_model,
                                                            monkeypatch, caplog):
    def refuse(*args, **kwargs):
        raise RuntimeError("unsupported operator\nsecond line")

    monkeypatch.setattr(torch.export, "export", refuse)
    with caplog.at_level(logging.WARNING, logger="vidface.models.loading"):
        model = load_osdface(tiny_osdface_options)
    assert "cannot be exported for fast loading (unsupported operator)" in caplog.text
    assert not model.static_batch and _ready_folders(ready_cache) == []
    faces = smooth_faces(2, seed=15)
    assert torch.equal(model.restore(faces), tiny_osdface_model.restore(faces))


def test_ready_folder_follows_the_weights_and_settings(tmp_path, ready_cache, tiny_osdface):
    location = WeightsLocation(tiny_osdface.release, tiny_osdface.base)
    cpu = torch.device("cpu")
    folder = ready.ready_folder(location, cpu, torch.float32, 1)
    assert folder == ready.ready_folder(location, cpu, torch.float32, 1)
    others = {ready.ready_folder(location, cpu, torch.bfloat16, 1), ready.ready_folder(location, cpu, torch.float32, 2)}
    assert folder not in others and len(others) == 2
    vae_config = tiny_osdface.base / "vae" / "config.json"
    stat = vae_config.stat()
    try:
        os.utime(vae_config, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
        assert ready.ready_folder(location, cpu, torch.float32, 1) != folder
    finally:
        os.utime(vae_config, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_only_the_most_recent_ready_models_stay(ready_cache, tiny_osdface_options):
    ready_cache.mkdir(parents=True)
    old = []
    for age in range(ready.KEEP + 1):
        folder = ready_cache / f"old-{age}"
        folder.mkdir()
        (folder / "model.json").write_text("{}")
        os.utime(folder, (1_000_000 - age, 1_000_000 - age))
        old.append(folder)
    load_osdface(tiny_osdface_options)
    kept = _ready_folders(ready_cache)
    assert len(kept) == ready.KEEP
    assert [path for path in old if path in kept] == old[:ready.KEEP - 1]  # the newest of the old ones
    listed = ready.ready_models()  # what `vidface weights path` counts: most recently used first, with sizes
    assert [folder for folder, _ in listed[1:]] == old[:ready.KEEP - 1] and listed[0][0] not in old
    assert listed[0][1] > 1000 and all(size == 2 for _, size in listed[1:])  # the old ones: "{}"


def test_a_ready_model_being_written_is_neither_listed_nor_removed(ready_cache, tiny_osdface_options):
    """Another process's scratch folder holds a model.json before it is published whole."""
    from vidface.files import SCRATCH_PREFIX

    ready_cache.mkdir(parents=True)
    writing = ready_cache / f"{SCRATCH_PREFIX}other"
    writing.mkdir()
    (writing / "model.json").write_text("{}")
    os.utime(writing, (1_000, 1_000))  # older than any ready model, so the first to go if it counted
    for age in range(ready.KEEP):
        folder = ready_cache / f"old-{age}"
        folder.mkdir()
        (folder / "model.json").write_text("{}")
        os.utime(folder, (1_000_000 - age, 1_000_000 - age))
    load_osdface(tiny_osdface_options)
    assert writing.is_dir()
    assert [folder.name for folder, _ in ready.ready_models()][1:] == [f"old-{age}" for age in range(ready.KEEP - 1)]


def test_a_ready_model_in_a_cache_this_user_may_only_read_loads(ready_cache, tiny_osdface_options, monkeypatch):
    """A cache shared read-only (an administrator's): the ready model loads and is used, unmarked."""
    made = load_osdface(tiny_osdface_options)
    [folder] = _ready_folders(ready_cache)
    os.utime(folder, (1_000, 1_000))

    def refuse(path, *args, **kwargs):  # what the system answers a user who does not own the folder
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(os, "utime", refuse)
    loaded = load_osdface(tiny_osdface_options)
    assert isinstance(loaded.noise, GraphNetwork) and folder.stat().st_mtime == 1_000
    faces = smooth_faces(2, seed=16)
    assert torch.equal(loaded.restore(faces), made.restore(faces))


def test_on_a_cpu_bf16_runs_in_channels_last_and_fp32_does_not(ready_cache, tiny_osdface_options):
    """oneDNN's bf16 kernels are faster on NHWC; in fp32 on a CPU the layout gains nothing, so it stays."""
    def layouts(**settings) -> set[bool]:
        model = load_osdface(replace(tiny_osdface_options, batch_size=2, **settings))
        return {weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
                for network in model.networks for weight in network.parameters()
                if weight.dim() == 4 and weight.shape[-1] > 1}  # a 1x1 kernel is both layouts at once

    assert layouts(dtype="bf16") == {True}
    assert layouts(dtype="bf16", channels_last=False) == {False}
    assert layouts(dtype="fp32") == {False}
    faces = smooth_faces(2, seed=3)
    exact = load_osdface(replace(tiny_osdface_options, batch_size=2, dtype="fp32")).restore(faces)
    errors = {layout: (load_osdface(replace(tiny_osdface_options, batch_size=2, dtype="bf16", channels_last=layout))
                       .restore(faces).float() - exact).abs().mean() for layout in (True, False)}
    # Other kernels round otherwise, but the layout adds no error of its own to bf16's.
    assert errors[True] < 1.25 * errors[False] < 0.05
