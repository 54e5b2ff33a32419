"""Restore a folder of aligned face images: the official OSDFace script's job, with vidface's
model code (what `vidface faces` runs)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vidface.errors import InputError, OutputError
from vidface.files import atomic_output

__all__ = ["FaceJob", "plan_faces", "read_face", "restore_faces"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FaceJob:
    source: Path
    target: Path


def plan_faces(input_dir: Path, output_dir: Path, overwrite: bool = False) -> list[FaceJob]:
    """Check every file of input_dir (sorted, hidden files ignored) and pair it with its output.

    Raises InputError for a missing folder, an empty one, a file that is not an image, a
    non-square image, or two inputs that would write the same OUT_DIR/<stem>.png. Jobs whose
    output exists are left out unless ``overwrite``.
    """
    from PIL import Image, UnidentifiedImageError

    if not input_dir.is_dir():
        raise InputError(f"IN_DIR {input_dir} is not a folder; pass a folder of aligned face images")
    files = sorted(p for p in input_dir.iterdir() if p.is_file() and not p.name.startswith("."))
    if not files:
        raise InputError(f"IN_DIR {input_dir} has no files; pass a folder of aligned face images")
    jobs, targets = [], {}
    for path in files:
        try:
            with Image.open(path) as image:
                width, height = image.size
        except (UnidentifiedImageError, OSError):
            raise InputError(f"{path} is not an image (PNG, JPEG, WebP, ...); IN_DIR must hold only face "
                             f"images") from None
        if width != height:
            raise InputError(f"{path} is {width} x {height}; faces must be square aligned crops (FFHQ "
                             f"alignment, 512 x 512); use `vidface restore` for whole frames")
        target = output_dir / (path.stem + ".png")
        if target in targets:
            raise InputError(f"{path} and {targets[target]} would both write {target}; rename one")
        targets[target] = path
        if overwrite or not target.exists():
            jobs.append(FaceJob(path, target))
    skipped = len(files) - len(jobs)
    if skipped:
        log.info("%d image(s) skipped: their output exists (-y to redo them)", skipped)
    return jobs


def read_face(path: Path, size: int) -> torch.Tensor:
    """A face image as 3 x size x size float32 RGB in [0, 1], resized as the official script
    does (bilinear, align_corners=True) when it is not size x size already."""
    from PIL import Image

    with Image.open(path) as image:
        rgb = np.asarray(image.convert("RGB"))
    face = torch.from_numpy(rgb.copy()).permute(2, 0, 1).float() / 255
    if face.shape[-1] != size:
        face = F.interpolate(face[None], size=(size, size), mode="bilinear", align_corners=True)[0]
    return face


def _write_png(face: torch.Tensor, target: Path) -> None:
    """3 x H x W float RGB [0, 1] -> 8-bit PNG (rounded), written atomically."""
    from PIL import Image

    pixels = (face.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    try:
        with atomic_output(target) as partial:
            Image.fromarray(pixels).save(partial, format="PNG")
    except OSError as error:
        raise OutputError(f"cannot write {target} ({error.strerror or error}); check the folder") from None


def restore_faces(model, jobs: Sequence[FaceJob], batch_size: int = 0, progress: bool = False) -> int:
    """Restore each job's image with ``model`` (an OSDFace) in batches; returns the count written.

    batch_size: faces per model call; 0: the model's own batch size.
    """
    from tqdm import tqdm

    batch = batch_size or model.batch_size
    bar = tqdm(total=len(jobs), unit="face", disable=not progress)
    written = 0
    for start in range(0, len(jobs), batch):
        chunk = jobs[start:start + batch]
        faces = torch.stack([read_face(job.source, model.face_size) for job in chunk])
        for job, face in zip(chunk, model.restore(faces)):
            _write_png(face, job.target)
            written += 1
        bar.update(len(chunk))
    bar.close()
    return written
