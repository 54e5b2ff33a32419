"""Hub files in the Hugging Face cache: looked up where huggingface_hub keeps them and downloaded
into the same layout, so HF_HOME, HF_HUB_CACHE and HF_HUB_OFFLINE work as users expect and other
tools see the files.

Layout (huggingface_hub's): ``<cache>/models--ORG--NAME/blobs/<sha256>`` holds each file once;
``snapshots/<commit>/<path>`` links to it; ``refs/<branch>`` names a branch's commit. The
transfer itself is vidface's (:mod:`vidface.downloads`): one progress bar, a resumable part
file, a short connection timeout and no retry messages.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from vidface.downloads import Remote, request
from vidface.errors import WeightsError
from vidface.files import sha256_of
from vidface.weights.sources import HubRepo, PinnedFile

_COMMIT = re.compile(r"[0-9a-f]{40}")


def cache_root() -> Path:
    """huggingface_hub's cache folder, read from the environment as huggingface_hub does."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME") or "~/.cache", "huggingface")
    return Path(home).expanduser() / "hub"


def repo_folder(repo: str) -> Path:
    return cache_root() / f"models--{repo.replace('/', '--')}"


def snapshot(repo: HubRepo) -> Path:
    """The snapshot folder of `repo`'s revision (a branch through its ref, if one is cached)."""
    folder = repo_folder(repo.repo)
    commit = repo.revision
    ref = folder / "refs" / repo.revision
    if not _COMMIT.fullmatch(commit) and ref.is_file():
        commit = ref.read_text().strip()
    return folder / "snapshots" / commit


def cached(repo: HubRepo, files: tuple[PinnedFile, ...]) -> Path | None:
    """The snapshot folder if every file of `files` is in it, else None."""
    folder = snapshot(repo)
    return folder if all((folder / f.path).is_file() for f in files) else None


def remotes(client, repo: HubRepo, files: tuple[PinnedFile, ...]) -> tuple[list[Remote], str]:
    """The downloads for `files` of `repo` and the commit they belong to.

    Asks the hub about each file (a HEAD request) when anything is not pinned; for a pinned
    revision whose files are all pinned, one request checks that the source answers.
    """
    commit = repo.revision if _COMMIT.fullmatch(repo.revision) else None
    blobs = repo_folder(repo.repo) / "blobs"
    items = []
    for index, file in enumerate(files):
        size = file.size
        if commit is None or size is None or file.sha256 is None or index == 0:
            response = request(client, "HEAD", repo.url(file.path), repo.name, allow_redirects=False)
            _raise_for_status(response, repo, file.path)
            commit = commit or response.headers.get("X-Repo-Commit") or repo.revision
            length = response.headers.get("X-Linked-Size") or response.headers.get("Content-Length")
            size = size if size is not None else (int(length) if length else None)
        name = file.sha256 or f"{file.path.replace('/', '--')}.download"
        items.append(Remote(repo.url(file.path), blobs / name, file.path, repo.name, size, file.sha256))
    return items, commit


def _raise_for_status(response, repo: HubRepo, path: str) -> None:
    if response.status_code < 400:
        return
    code = response.headers.get("X-Error-Code", "")
    if code == "GatedRepo" or response.status_code in (401, 403):
        raise WeightsError(f"{repo.name} is gated or private: accept its licence on {repo.page} and log in "
                           f"(`hf auth login`), or install the files by hand with `vidface weights install`")
    if code == "RepoNotFound" or (response.status_code == 404 and code != "EntryNotFound"):
        raise WeightsError(f"{repo.name} does not exist ({repo.page})")
    if response.status_code == 404:
        raise WeightsError(f"{repo.name} has no file {path}")
    raise WeightsError(f"{repo.name} answered HTTP {response.status_code} for {path}")


def place(repo: HubRepo, commit: str, file: PinnedFile, blob: Path) -> Path:
    """Link a downloaded blob into the snapshot of `commit` (renaming an unpinned blob to its
    SHA-256, as huggingface_hub names them) and record the branch's commit."""
    if file.sha256 is None:
        named = blob.with_name(sha256_of(blob))
        os.replace(blob, named)
        blob = named
    folder = repo_folder(repo.repo)
    target = folder / "snapshots" / commit / file.path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.unlink(missing_ok=True)
    try:
        target.symlink_to(os.path.relpath(blob, target.parent))
    except OSError:  # file systems without symlinks: the snapshot keeps the file itself
        os.replace(blob, target)
    if not _COMMIT.fullmatch(repo.revision):
        (folder / "refs").mkdir(exist_ok=True)
        (folder / "refs" / repo.revision).write_text(commit)
    return target
