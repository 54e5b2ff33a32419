"""`vidface weights download|path|convert`, and the offline error when nothing is cached."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from PIL import Image
from safetensors import safe_open

from tiny_model import tiny_osdface  # noqa: F401 (pytest fixture)


def test_offline_with_empty_cache_names_what_is_missing(tmp_path):
    home = tmp_path / "hf-home"
    home.mkdir()
    env = dict(os.environ, HF_HOME=str(home), HF_HUB_OFFLINE="1")
    env.pop("HF_HUB_CACHE", None)
    env.pop("VIDFACE_BASE", None)
    env.pop("VIDFACE_WEIGHTS_REPO", None)
    faces = tmp_path / "faces"
    faces.mkdir()
    Image.new("RGB", (64, 64)).save(faces / "a.png")
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "vidface", "faces", str(faces), str(out)], env=env,
                            capture_output=True, text=True, timeout=120)
    _assert_missing_message(result.returncode, result.stderr)
    assert not out.exists()
    assert not any(home.rglob("*")), list(home.rglob("*"))  # nothing written to the cache


def _assert_missing_message(code: int, err: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 1, err
    assert len(lines) == 1 and lines[0].startswith("vidface: error: model weights missing: "), err
    for name in ("jkwang28/OSDFace/pytorch_lora_weights.safetensors", "jkwang28/OSDFace/associate_2.ckpt",
                 "stabilityai/stable-diffusion-2-1-base/unet/diffusion_pytorch_model.safetensors"):
        assert name in lines[0]
    assert "HF_HUB_OFFLINE" in lines[0] and "vidface weights download" in lines[0] and "--weights" in lines[0]


def test_download_offline_names_what_is_missing(cli, tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    for name in ("VIDFACE_BASE", "VIDFACE_WEIGHTS_REPO"):
        monkeypatch.delenv(name, raising=False)
    code, _out, err = cli("weights", "download")
    _assert_missing_message(code, err)
    assert str(tmp_path / "hub") in err


def test_path_prints_local_folders(cli, tiny_osdface):
    code, out, err = cli("weights", "path", "--weights", tiny_osdface.release, "--base", tiny_osdface.base)
    assert code == 0, err
    assert out.splitlines() == [f"release: {tiny_osdface.release}", f"base: {tiny_osdface.base}"]


def test_path_names_a_missing_release_file(cli, tmp_path, tiny_osdface):
    release = tmp_path / "release"
    release.mkdir()
    (release / "pytorch_lora_weights.safetensors").write_bytes(
        (tiny_osdface.release / "pytorch_lora_weights.safetensors").read_bytes())
    code, _out, err = cli("weights", "path", "--weights", release, "--base", tiny_osdface.base)
    assert code == 1
    assert "embedding_change_weights.pth, associate_2.ckpt" in err and err.count("\n") == 1


def test_convert_writes_a_bundle_and_refuses_to_overwrite(cli, tmp_path, tiny_osdface):
    bundle = tmp_path / "osdface.safetensors"
    code, out, err = cli("weights", "convert", bundle, "--weights", tiny_osdface.release)
    assert code == 0, err
    assert out.strip() == str(bundle)
    with safe_open(str(bundle), framework="pt") as handle:
        assert handle.metadata()["format"] == "vidface-osdface"
        keys = list(handle.keys())
    assert "embedder.quantize.embedding.weight" in keys and any(k.startswith("lora.unet.") for k in keys)
    code, _out, err = cli("weights", "convert", bundle, "--weights", tiny_osdface.release)
    assert code == 1 and "exists" in err
    code, out, err = cli("weights", "path", "--weights", tmp_path, "--base", tiny_osdface.base)
    assert code == 0 and f"release: {bundle}" in out  # a folder holding the bundle resolves to it


def test_convert_of_damaged_release_leaves_nothing(cli, tmp_path, tiny_osdface):
    release = Path(tmp_path / "release")
    release.mkdir()
    for name in ("pytorch_lora_weights.safetensors", "embedding_change_weights.pth", "associate_2.ckpt"):
        (release / name).write_bytes((tiny_osdface.release / name).read_bytes())
    (release / "associate_2.ckpt").write_bytes(b"not a checkpoint")
    bundle = tmp_path / "osdface.safetensors"
    code, _out, err = cli("weights", "convert", bundle, "--weights", release)
    assert code == 1 and "associate_2.ckpt" in err and "Traceback" not in err
    assert not bundle.exists() and not list(tmp_path.glob("*.partial"))
