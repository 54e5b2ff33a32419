"""`vidface weights download|install|path|verify|convert`."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

from safetensors import safe_open

from tiny_model import tiny_osdface  # noqa: F401 (pytest fixture)


def test_download_offline_names_what_is_missing(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for name in ("VIDFACE_BASE", "VIDFACE_WEIGHTS_REPO", "VIDFACE_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    code, _out, err = cli("weights", "download")
    lines = err.splitlines()
    assert code == 1 and len(lines) == 1, err
    assert "the OSDFace release" in err and "Stable Diffusion 2.1-base" in err and "HF_HUB_OFFLINE is set" in err
    assert not (tmp_path / "cache").exists() and not (tmp_path / "hub").exists()


def test_path_prints_local_folders(cli, tiny_osdface):
    code, out, err = cli("weights", "path", "--weights", tiny_osdface.release, "--base", tiny_osdface.base)
    assert code == 0, err
    assert out.splitlines()[:2] == [f"release: {tiny_osdface.release}", f"base: {tiny_osdface.base}"]
    assert re.match(r"ready models: \d+ in \S+/vidface/ready \([\d.]+ [MG]B; made from the weights", out.splitlines()[2])


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


def _own_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    for name in ("VIDFACE_BASE", "VIDFACE_WEIGHTS_REPO", "VIDFACE_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(name, raising=False)


def test_installed_weights_need_no_model_flags(cli, tmp_path, monkeypatch, tiny_osdface):
    """Drive's "download all" zip (the files in a folder) and a base folder, installed in one call;
    then `vidface restore IN OUT` finds them by itself."""
    import numpy as np

    from face_clips import moving_face_clip
    from media import write_video
    from vidface.weights import RELEASE_FILES, base_dir, release_dir

    _own_caches(tmp_path, monkeypatch)
    archive = tmp_path / "OSDFace-20260101T000000Z-001.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        for name in RELEASE_FILES:
            handle.write(tiny_osdface.release / name, f"pretrained/{name}")
    code, out, err = cli("weights", "install", archive, tiny_osdface.base)
    assert code == 0, err
    assert out.splitlines() == [f"installed the OSDFace release from {archive} into {release_dir()}",
                                f"installed Stable Diffusion 2.1-base from {tiny_osdface.base} into {base_dir()}"]
    for name in RELEASE_FILES:
        assert (release_dir() / name).read_bytes() == (tiny_osdface.release / name).read_bytes()
    code, out, _ = cli("weights", "path")
    assert code == 0 and out.splitlines()[:2] == [f"release: {release_dir()}", f"base: {base_dir()}"]
    code, out, _ = cli("weights", "verify")
    assert code == 0 and "release: ok" in out and "base: ok, loads strictly" in out  # not the pinned SD files

    clip = moving_face_clip(6, 160, 120)
    source = write_video(tmp_path / "in.mp4", frames=6, size=(160, 120), images=np.stack(clip.frames))
    code, out, err = cli("restore", source, tmp_path / "out.mp4", "--no-progress")
    assert code == 0, err
    assert "faces restored" in out and (tmp_path / "out.mp4").is_file()


def test_install_takes_a_bundle_and_links_on_request(cli, tmp_path, monkeypatch, tiny_osdface):
    from vidface.weights import BUNDLE_FILE, RELEASE_FILES, release_dir

    _own_caches(tmp_path, monkeypatch)
    bundle = tmp_path / "my-osdface.safetensors"
    assert cli("weights", "convert", bundle, "--weights", tiny_osdface.release)[0] == 0
    assert cli("weights", "install", tiny_osdface.release)[0] == 0
    code, out, err = cli("weights", "install", bundle, "--link")
    assert code == 0, err
    assert (release_dir() / BUNDLE_FILE).resolve() == bundle.resolve()
    assert not any((release_dir() / name).exists() for name in RELEASE_FILES)  # the bundle replaced the files
    code, out, _ = cli("weights", "path", "--base", tiny_osdface.base)
    assert out.splitlines()[0] == f"release: {release_dir() / BUNDLE_FILE}"


def test_install_refuses_what_does_not_load(cli, tmp_path, monkeypatch, tiny_osdface):
    from vidface.weights import release_dir

    _own_caches(tmp_path, monkeypatch)
    damaged = tmp_path / "release"
    damaged.mkdir()
    for name in ("pytorch_lora_weights.safetensors", "embedding_change_weights.pth", "associate_2.ckpt"):
        (damaged / name).write_bytes((tiny_osdface.release / name).read_bytes())
    (damaged / "associate_2.ckpt").write_bytes(b"not a checkpoint")
    code, _out, err = cli("weights", "install", damaged)
    assert code == 1 and "associate_2.ckpt" in err and len(err.splitlines()) == 1
    assert not release_dir().exists()
    code, _out, err = cli("weights", "install", tmp_path / "nothing-here")
    assert code == 1 and "does not exist" in err


def test_verify_finds_a_damaged_installed_release(cli, tmp_path, monkeypatch, tiny_osdface):
    from vidface.weights import release_dir

    _own_caches(tmp_path, monkeypatch)
    assert cli("weights", "install", tiny_osdface.release, tiny_osdface.base)[0] == 0
    (release_dir() / "embedding_change_weights.pth").write_bytes(b"bit rot")
    code, out, _ = cli("weights", "verify")
    assert code == 1 and "release: damaged" in out and "embedding_change_weights.pth" in out


def test_the_readme_python_example_runs(tmp_path, monkeypatch, tiny_osdface):
    """README's Python API example, as written, on installed (tiny) weights."""
    import re

    import numpy as np

    from face_clips import moving_face_clip
    from media import write_video
    from vidface.weights.install import install

    _own_caches(tmp_path, monkeypatch)
    install([tiny_osdface.release, tiny_osdface.base])
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    example = re.search(r"### Python API\n\n```python\n(.*?)```", readme, re.S).group(1)
    clip = moving_face_clip(6, 160, 120)
    write_video(tmp_path / "in.mp4", frames=6, size=(160, 120), images=np.stack(clip.frames))
    monkeypatch.chdir(tmp_path)
    exec(compile(example, "README.md", "exec"), {})
    assert (tmp_path / "out.mp4").is_file()


def test_a_bundle_of_another_version_is_refused(cli, tmp_path, monkeypatch, tiny_osdface):
    from safetensors.torch import load_file, save_file

    _own_caches(tmp_path, monkeypatch)
    bundle = tmp_path / "osdface.safetensors"
    assert cli("weights", "convert", bundle, "--weights", tiny_osdface.release)[0] == 0
    with safe_open(str(bundle), framework="pt") as handle:
        metadata = dict(handle.metadata())
    save_file(load_file(str(bundle)), str(bundle), metadata={**metadata, "version": "2"})
    code, _out, err = cli("weights", "install", bundle)
    assert code == 1 and "version 2 bundle" in err and "convert the release again" in err
