"""Loading the OSDFace release: good files, damaged files, strict keys, pickle safety, LoRA styles,
the converted bundle."""

from __future__ import annotations

import argparse
import fractions
import os
import pickle
import shutil
import subprocess
import sys
import types
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from tiny_model import tiny_osdface, tiny_osdface_model, tiny_osdface_options  # noqa: F401
from vidface.errors import WeightsError
from vidface.models.loading import build_embedder, convert_release, load_osdface
from vidface.models.release import read_release

LORA = "pytorch_lora_weights.safetensors"
PROJECTION = "embedding_change_weights.pth"
EMBEDDER = "associate_2.ckpt"


def _faces(count: int = 1, size: int = 64) -> torch.Tensor:
    return torch.rand(count, 3, size, size, generator=torch.Generator().manual_seed(11))


@pytest.fixture
def release(tiny_osdface, tmp_path) -> Path:
    """A private copy of the tiny release folder, free to damage."""
    return Path(shutil.copytree(tiny_osdface.release, tmp_path / "release"))


def _edit_checkpoint(path: Path, edit) -> None:
    checkpoint = torch.load(path, weights_only=True)
    edit(checkpoint["state_dict"])
    torch.save(checkpoint, path)


def _one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


def test_merged_lora_equals_hand_merge(tiny_osdface, tiny_osdface_model):
    from diffusers import UNet2DConditionModel

    base = UNet2DConditionModel.from_pretrained(tiny_osdface.base, subfolder="unet").state_dict()
    merged = tiny_osdface_model.noise.unet.state_dict()
    lora = load_file(str(tiny_osdface.release / LORA))
    checked = {"linear": 0, "conv": 0}
    for key, down in lora.items():
        if ".lora_A." not in key:
            continue
        target = key[len("unet."):].replace(".lora_A.weight", ".weight")
        up = lora[key.replace("lora_A", "lora_B")]
        expected = base[target] + (up.flatten(1) @ down.flatten(1)).reshape(base[target].shape)
        assert torch.allclose(merged[target], expected, atol=1e-6), target
        assert not torch.allclose(merged[target], base[target])
        checked["conv" if down.ndim == 4 else "linear"] += 1
    assert checked["linear"] > 10 and checked["conv"] > 5
    assert not any("lora" in key for key in merged)  # merged and unloaded: a plain UNet


def test_legacy_lora_keys_give_the_same_model(release, tiny_osdface_options, tiny_osdface_model):
    lora = load_file(str(release / LORA))
    legacy = {key.replace(".lora_A.", ".lora.down.").replace(".lora_B.", ".lora.up."): value
              for key, value in lora.items()}
    save_file(legacy, str(release / LORA))
    model = load_osdface(replace(tiny_osdface_options, weights=str(release)))
    faces = _faces()
    assert torch.equal(model.restore(faces), tiny_osdface_model.restore(faces))


def test_embedder_missing_key_is_named(release):
    _edit_checkpoint(release / EMBEDDER, lambda sd: sd.pop("vqvae_LQ.encoder.mid.attn_1.q.weight"))
    with pytest.raises(WeightsError) as error:
        build_embedder(read_release(release))
    message = _one_line(error)
    assert "vqvae_LQ.encoder.mid.attn_1.q.weight" in message and "missing key" in message
    assert EMBEDDER in message


def test_embedder_unexpected_key_is_named(release):
    _edit_checkpoint(release / EMBEDDER, lambda sd: sd.__setitem__("vqvae_LQ.quantize.extra", torch.zeros(3)))
    with pytest.raises(WeightsError) as error:
        build_embedder(read_release(release))
    assert "vqvae_LQ.quantize.extra" in _one_line(error) and "unexpected key" in str(error.value)


def test_decoder_and_other_branches_are_not_read(release):
    def add(sd):
        sd["vqvae_LQ.decoder.up.0.block.0.conv1.weight"] = torch.zeros(2, 2, 3, 3)
        sd["loss_LQ.discriminator.main.0.weight"] = torch.zeros(2)
    _edit_checkpoint(release / EMBEDDER, add)
    assert build_embedder(read_release(release)).config.num_codes == 77


def test_projection_wrong_shape_is_named(release):
    projection = torch.load(release / PROJECTION, weights_only=True)
    projection["conv1.weight"] = projection["conv1.weight"][:, :-1]
    torch.save(projection, release / PROJECTION)
    with pytest.raises(WeightsError) as error:
        build_embedder(read_release(release))
    message = _one_line(error)
    assert PROJECTION in message and "conv1.weight" in message and "shape" in message


@pytest.mark.parametrize("name", [LORA, PROJECTION, EMBEDDER])
def test_corrupt_files_are_reported(release, name):
    data = (release / name).read_bytes()
    (release / name).write_bytes(data[: len(data) // 3])
    with pytest.raises(WeightsError) as error:
        read_release(release)
    message = _one_line(error)
    assert name in message and "download it again" in message


def test_lora_errors_name_the_key(release, tiny_osdface_options):
    lora = load_file(str(release / LORA))
    options = replace(tiny_osdface_options, weights=str(release))
    first = next(key for key in lora if key.endswith(".lora_A.weight"))

    broken = dict(lora)
    broken.pop(first.replace("lora_A", "lora_B"))
    save_file(broken, str(release / LORA))
    with pytest.raises(WeightsError, match="missing key") as error:
        load_osdface(options)
    assert first.replace("lora_A", "lora_B") in _one_line(error)

    broken = dict(lora, **{"unet.mid_block.attentions.0.proj_in.lora_A.bias": torch.zeros(4)})
    save_file(broken, str(release / LORA))
    with pytest.raises(WeightsError, match="unexpected key unet.mid_block.attentions.0.proj_in.lora_A.bias"):
        load_osdface(options)

    broken = dict(lora, **{first: lora[first][:, :-1].contiguous()})
    save_file(broken, str(release / LORA))
    with pytest.raises(WeightsError, match="shape") as error:
        load_osdface(options)
    assert first in _one_line(error)

    broken = dict(lora)
    broken["unet.no_such_block.to_q.lora_A.weight"] = torch.zeros(4, 8)
    broken["unet.no_such_block.to_q.lora_B.weight"] = torch.zeros(8, 4)
    save_file(broken, str(release / LORA))
    with pytest.raises(WeightsError, match="names no UNet module"):
        load_osdface(options)


def _pickled_checkpoint(path: Path, extra: object) -> None:
    """associate_2.ckpt with objects that weights_only=True cannot build by default."""
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["hyper_parameters"] = {"args": argparse.Namespace(lr=1e-4), "extra": extra}
    torch.save(checkpoint, path)


def test_lightning_objects_load_without_pickle_trust(release, monkeypatch):
    # A class that pickles as pytorch_lightning's ModelCheckpoint, without Lightning installed.
    module = types.ModuleType("pytorch_lightning.callbacks.model_checkpoint")

    class ModelCheckpoint:
        def __init__(self) -> None:
            self.best_model_score = torch.tensor(0.5)

    ModelCheckpoint.__module__ = module.__name__
    ModelCheckpoint.__qualname__ = "ModelCheckpoint"
    module.ModelCheckpoint = ModelCheckpoint
    for name in ("pytorch_lightning", "pytorch_lightning.callbacks", module.__name__):
        monkeypatch.setitem(sys.modules, name, sys.modules.get(name) or types.ModuleType(name))
    monkeypatch.setitem(sys.modules, module.__name__, module)
    checkpoint = torch.load(release / EMBEDDER, weights_only=True)
    checkpoint["callbacks"] = {ModelCheckpoint: {"state": ModelCheckpoint()}}
    checkpoint["hyper_parameters"] = {"args": argparse.Namespace(lr=1e-4)}
    torch.save(checkpoint, release / EMBEDDER)
    for name in ("pytorch_lightning", "pytorch_lightning.callbacks", module.__name__):
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(pickle.UnpicklingError):  # the plain weights_only load fails on this file
        torch.load(release / EMBEDDER, weights_only=True)
    assert build_embedder(read_release(release)).config.n_embed == 1024


def test_foreign_pickled_objects_need_trust(release):
    _pickled_checkpoint(release / EMBEDDER, fractions.Fraction(1, 3))
    with pytest.raises(WeightsError, match="--trust-pickle") as error:
        read_release(release)
    assert "fractions.Fraction" in _one_line(error)
    assert build_embedder(read_release(release, trust_pickle=True)).config.num_codes == 77


def test_bundle_round_trip_gives_identical_results(tmp_path, tiny_osdface, tiny_osdface_options, tiny_osdface_model):
    bundle = convert_release(tiny_osdface.release, tmp_path / "osdface.safetensors")
    assert not list(tmp_path.glob("*.partial"))
    keys = load_file(str(bundle)).keys()
    assert all(key.startswith(("lora.", "embedder.")) for key in keys)
    model = load_osdface(replace(tiny_osdface_options, weights=str(bundle)))
    faces = _faces()
    assert torch.equal(model.restore(faces), tiny_osdface_model.restore(faces))


def test_bundle_with_foreign_key_is_refused(tmp_path, tiny_osdface):
    bundle = convert_release(tiny_osdface.release, tmp_path / "osdface.safetensors")
    tensors = load_file(str(bundle))
    tensors["stray.weight"] = torch.zeros(1)
    save_file(tensors, str(bundle), metadata={"format": "vidface-osdface", "version": "1"})
    with pytest.raises(WeightsError, match="unexpected key stray.weight"):
        read_release(bundle)
    save_file({"x": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(WeightsError, match="not an OSDFace bundle"):
        read_release(tmp_path / "other.safetensors")


def test_wrong_base_is_refused(tmp_path, tiny_osdface, tiny_osdface_options):
    import json

    base = Path(shutil.copytree(tiny_osdface.base, tmp_path / "base"))
    config_path = base / "scheduler" / "scheduler_config.json"
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps(dict(config, prediction_type="v_prediction")))
    with pytest.raises(WeightsError, match="epsilon"):
        load_osdface(replace(tiny_osdface_options, base=str(base)))
    (base / "vae" / "config.json").unlink()
    with pytest.raises(WeightsError, match="vae/config.json"):
        load_osdface(replace(tiny_osdface_options, base=str(base)))


def test_official_embedder_layout():
    """The full-size embedder's keys and shapes, as listed in docs/osdface-weights.md."""
    from vidface.models.embedder import VisualRepresentationEmbedder

    with torch.device("meta"):
        state = VisualRepresentationEmbedder().state_dict()
    assert len([k for k in state if k.startswith("encoder.")]) == 170  # as in DAEFR's LQ encoder
    assert state["encoder.conv_in.weight"].shape == (64, 3, 3, 3)
    assert state["encoder.down.5.attn.1.proj_out.weight"].shape == (512, 512, 1, 1)
    assert state["encoder.conv_out.weight"].shape == (512, 512, 3, 3)
    assert state["quantize.embedding.weight"].shape == (1024, 512)
    assert state["projection.conv1.weight"].shape == (256, 512, 1)
    assert state["projection.conv2.weight"].shape == (1024, 256, 1)
    assert not any(f"encoder.down.{i}.attn" in k for k in state for i in range(5))
    total = sum(v.numel() for v in state.values())
    assert 28e6 < total < 31e6


def test_a_program_that_ends_while_the_model_loads_exits_cleanly(tmp_path, tiny_osdface):
    """A script that ends at once after `load_restorer` (as a run refused early does) leaves the
    interpreter to shut down while the model's thread still imports torch and loads: it must end
    with the script's own exit code and no traceback, not abort."""
    script = ("import sys\n"
              "from vidface.api import load_restorer\n"
              "from vidface.config import load_settings\n"
              f"load_restorer(load_settings(overrides={{'model.device': 'cpu', 'model.batch_size': 1, "
              f"'model.weights': {str(tiny_osdface.release)!r}, 'model.base': {str(tiny_osdface.base)!r}}}))\n"
              "print('torch imported before the end:', 'torch.nn' in sys.modules)\n"
              "sys.exit(3)\n")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "XDG_CACHE_HOME": str(tmp_path)})
    assert (run.returncode, run.stderr) == (3, "")
    assert run.stdout.strip() == "torch imported before the end: False"  # the case this is about


def test_a_device_too_full_for_the_model_is_named_in_one_line(tiny_osdface_options,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Moving the weights onto a device whose memory other processes hold fails in one line that
    says so, not with torch's allocator report."""
    from vidface.errors import DeviceMemoryError
    from vidface.models.osdface import OSDFace

    def full(self, *args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB")

    monkeypatch.setattr(OSDFace, "to", full)
    with pytest.raises(DeviceMemoryError) as error:
        load_osdface(tiny_osdface_options, ready=False)
    assert str(error.value) == ("cpu has too little free memory for the model (about 1.8 GiB in 16-bit): free memory "
                                "there (other processes use it) or choose another device with --device")
