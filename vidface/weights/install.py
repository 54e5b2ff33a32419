"""Weights a user fetched by hand, checked and put where vidface looks for them
(`vidface weights install`), and a check of what is installed (`vidface weights verify`).

Accepted: the OSDFace release folder (as downloaded from the authors' Drive folder), a zip of
it, the bundle from `vidface weights convert`, and a Stable Diffusion 2.1-base diffusers folder
(or a folder or zip holding several of these). Each is loaded strictly (every key and shape)
before it is copied, or linked with ``link=True``, into vidface's cache folder; a folder there
is replaced whole, never left half-written.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

from vidface.downloads import cache_root
from vidface.errors import WeightsError
from vidface.files import sha256_of
from vidface.weights import (
    BUNDLE_FILE, RELEASE_FILES, base_dir, base_problems, hub, installed_base, installed_release, release_dir, remove,
)
from vidface.weights.sources import DEFAULT_CATALOG, Catalog, HubRepo

_SEARCH_DEPTH = 3


def install(paths: list[Path], link: bool = False) -> list[str]:
    """Check and install every part found under `paths`; returns one line per part installed."""
    cache_root().mkdir(parents=True, exist_ok=True)
    lines = []
    with tempfile.TemporaryDirectory(dir=cache_root(), prefix=".install-") as scratch:
        for number, path in enumerate(map(Path, paths)):
            path = path.expanduser()
            if not path.exists():
                raise WeightsError(f"{path} does not exist")
            unpacked = path.suffix.lower() == ".zip" and path.is_file()
            found = _parts_in(_unzip(path, Path(scratch) / str(number)) if unpacked else path)
            if not found:
                raise WeightsError(f"{path} holds neither the OSDFace release files ({', '.join(RELEASE_FILES)}), a "
                                   f"bundle from `vidface weights convert`, nor a Stable Diffusion 2.1-base folder")
            for kind, where in found:
                lines.append(_install_part(kind, where, link and not unpacked, path))
    return lines


def _unzip(path: Path, into: Path) -> Path:
    """Unpack the zip `path` into `into`, refusing an archive with an entry that would land
    outside it (an absolute name, `..`) or that is a link: such an archive was not made by
    zipping a download, and unpacking it as-is would put files where nobody asked."""
    try:
        with zipfile.ZipFile(path) as archive:
            for entry in archive.infolist():
                problem = ("points outside it" if _escapes(entry.filename)
                           else "is a link" if stat.S_ISLNK(entry.external_attr >> 16) else None)
                if problem is not None:
                    raise WeightsError(f"{path} is refused: its entry {entry.filename!r} {problem}; unpack what "
                                       "you trust by hand and install the folder")
            archive.extractall(into)
    except (zipfile.BadZipFile, OSError) as error:
        raise WeightsError(f"{path} cannot be unpacked ({error}); download it again") from None
    return into


def _escapes(name: str) -> bool:
    """Whether a zip entry's name is absolute or climbs out of the folder it is unpacked into."""
    parts = name.replace("\\", "/").split("/")
    return name.startswith(("/", "\\")) or (len(parts[0]) == 2 and parts[0][1] == ":") or ".." in parts


def _parts_in(path: Path, depth: int = 0) -> list[tuple[str, Path]]:
    """("release" | "bundle" | "base", path) for each part at or below `path`."""
    if path.is_file():
        return [("bundle", path)] if path.suffix == ".safetensors" else []
    if all((path / name).is_file() for name in RELEASE_FILES):
        found = [("release", path)]
    elif (path / BUNDLE_FILE).is_file():
        found = [("bundle", path / BUNDLE_FILE)]
    elif not base_problems(path):
        return [("base", path)]
    else:
        found = []
    if depth < _SEARCH_DEPTH:
        for child in sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")):
            found += [part for part in _parts_in(child, depth + 1) if part[0] == "base" or not found]
    return found


def _install_part(kind: str, path: Path, link: bool, given: Path) -> str:
    from vidface.models.loading import check_release, load_base

    if kind == "base":
        load_base(path)
        files = {name: path / name for name in _files(path) if name.split("/")[0] in ("unet", "vae", "scheduler")}
        _replace_folder(base_dir(), files, link)
        return f"installed Stable Diffusion 2.1-base from {given} into {base_dir()}"
    check_release(path)
    files = {name: path / name for name in RELEASE_FILES} if kind == "release" else {BUNDLE_FILE: path}
    _replace_folder(release_dir(), files, link)
    return f"installed the OSDFace {kind} from {given} into {release_dir()}"


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def _replace_folder(target: Path, files: dict[str, Path], link: bool) -> None:
    """Make `target` hold exactly `files` (name there -> original): copies, or links to the
    originals; built beside it and swapped in, so `target` is never half-written."""
    building = target.with_name(f".{target.name}.installing")
    remove(building)
    for name, original in files.items():
        destination = building / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        if link:
            destination.symlink_to(original.resolve())
        else:
            shutil.copyfile(original, destination)
    old = target.with_name(f".{target.name}.old")
    remove(old)
    if target.exists():
        os.replace(target, old)
    os.replace(building, target)
    remove(old)


def verify(catalog: Catalog = DEFAULT_CATALOG) -> tuple[list[str], bool]:
    """Recheck what is installed: the release by strict loading, base files against their
    pinned SHA-256 (a base of other files by strict loading). Returns report lines and whether
    everything is sound."""
    from vidface.models.loading import check_release, load_base

    lines, sound = [], True
    release = installed_release()
    if release is None:
        lines.append(f"release: not installed ({release_dir()})")
    else:
        line, ok = _strictly("release", lambda: check_release(release), f"loads strictly ({release})")
        lines.append(line)
        sound &= ok
    base = installed_base(catalog)
    if base is None:
        lines.append(f"base: not installed ({base_dir()}, or a pinned mirror in {hub.cache_root()})")
        return lines, sound
    differing = [f.path for f in catalog.base_files if f.sha256 and sha256_of(base / f.path) != f.sha256]
    pinned_mirror = any(isinstance(s, HubRepo) and base == hub.snapshot(s) for s in catalog.base_sources)
    if not differing:
        lines.append(f"base: ok, every file matches its pinned SHA-256 ({base})")
    elif pinned_mirror:
        lines.append(f"base: damaged: {', '.join(differing)} in {base} differ from the pinned files; delete "
                     f"them and run `vidface weights download`")
        sound = False
    else:
        line, ok = _strictly("base", lambda: load_base(base),
                             f"loads strictly; {', '.join(differing)} differ from the pinned mirror's ({base})")
        lines.append(line)
        sound &= ok
    return lines, sound


def _strictly(label: str, check: Callable[[], object], ok: str) -> tuple[str, bool]:
    """A report line for a strict-loading check, and whether it passed."""
    try:
        check()
    except WeightsError as error:
        return f"{label}: damaged: {error}", False
    return f"{label}: ok, {ok}", True
