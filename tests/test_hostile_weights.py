"""Weights files made to do harm are refused, in one line, before they can: a pickle whose
payload would create a file, safetensors headers that claim more than the file holds, and zips
whose entries would land outside where they are unpacked."""

from __future__ import annotations

import json
import resource
import shutil
import stat
import struct
import time
import zipfile
from pathlib import Path

import pytest
import torch

from tiny_model import tiny_osdface  # noqa: F401 (fixture)


class _Payload:
    """Pickles as a call of os.system: unpickling it would create the file `marker`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def _release_copy(tiny, tmp_path: Path) -> Path:
    release = tmp_path / "release"
    shutil.copytree(tiny.release, release)
    return release


def _refused(cli, *args) -> str:
    code, out, err = cli(*args)
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    return err


def test_a_pickle_payload_never_runs(cli, tmp_path: Path, monkeypatch, tiny_osdface) -> None:
    """The embedder checkpoint with a payload beside its tensors: weights install, weights
    verify-style loading (convert) and a restore all refuse it, and the payload never runs."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    release = _release_copy(tiny_osdface, tmp_path)
    checkpoint = release / "associate_2.ckpt"
    marker = tmp_path / "payload-ran"
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    torch.save({**state, "callbacks": _Payload(marker)}, checkpoint)
    for args in (("weights", "install", release),
                 ("weights", "convert", tmp_path / "bundle.safetensors", "--weights", release)):
        err = _refused(cli, *args)
        assert "cannot be loaded safely" in err and "posix.system" in err, err
    assert not marker.exists()
    assert not (tmp_path / "bundle.safetensors").exists() and not (tmp_path / "cache" / "vidface" / "osdface").exists()


@pytest.mark.parametrize("case", ["huge header", "tensor past the end"])
def test_safetensors_that_claim_too_much_are_refused_without_allocating(case: str, cli, tmp_path: Path, monkeypatch,
                                                                        tiny_osdface) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    release = _release_copy(tiny_osdface, tmp_path)
    lora = release / "pytorch_lora_weights.safetensors"
    if case == "huge header":
        lora.write_bytes(struct.pack("<Q", 1 << 62) + b"{}")
    else:  # a valid header for a 4 TB tensor, with 16 bytes of data
        header = json.dumps({"unet.x.lora_A.weight": {"dtype": "F32", "shape": [1 << 20, 1 << 20],
                                                      "data_offsets": [0, 1 << 42]}}).encode()
        lora.write_bytes(struct.pack("<Q", len(header)) + header + bytes(16))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    err = _refused(cli, "weights", "install", release)
    assert "is not a readable safetensors file" in err
    assert time.perf_counter() - started < 30
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 512 * 1024  # KiB: nothing near the claim


@pytest.mark.parametrize("entry", ["../outside.txt", "/tmp/absolute.txt", "link"])
def test_a_zip_whose_entries_escape_or_link_is_refused(entry: str, cli, tmp_path: Path, monkeypatch,
                                                       tiny_osdface) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    archive = tmp_path / "OSDFace.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        for file in Path(tiny_osdface.release).iterdir():
            handle.write(file, f"OSDFace/{file.name}")
        if entry == "link":
            info = zipfile.ZipInfo("OSDFace/notes.txt")
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            handle.writestr(info, "/etc/passwd")
        else:
            handle.writestr(entry, "written where nobody asked")
    err = _refused(cli, "weights", "install", archive)
    assert "is refused" in err and ("is a link" if entry == "link" else "points outside it") in err
    assert not (tmp_path / "outside.txt").exists() and not (tmp_path / "cache" / "vidface" / "osdface").exists()
