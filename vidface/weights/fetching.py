"""Fetching one missing part of the weights from one source: first a plan (the source answers,
the files and their sizes are known, nothing is written yet), then the transfer, the checks,
and the files' placing."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from vidface.downloads import Remote, fetch, request
from vidface.errors import WeightsError
from vidface.files import sha256_of
from vidface.weights import Part, drive, hub, remove
from vidface.weights.sources import DriveFolder, HubRepo, ModelScopeRepo, Source


@dataclass
class Plan:
    """What fetching `part` from `source` transfers: `remotes` (files not yet here) into
    `folder`; commit: the hub revision the files belong to."""

    part: Part
    source: Source
    folder: Path
    remotes: list[Remote] = field(default_factory=list)
    commit: str | None = None
    size: int = 0


def plan(client, part: Part, source: Source) -> Plan:
    """Ask `source` about `part`'s files; WeightsError (Unreachable among them) if it cannot serve."""
    if isinstance(source, HubRepo):
        remotes, commit = hub.remotes(client, source, part.files)
        result = Plan(part, source, hub.repo_folder(source.repo), remotes, commit)
    elif isinstance(source, DriveFolder):
        remotes = drive.remotes(client, source, part.files, part.into)
        result = Plan(part, source, part.into, [r for r in remotes if not r.target.exists()])
    else:
        _modelscope_package(source)
        request(client, "HEAD", source.page, source.name)  # answers at all?
        return Plan(part, source, part.into, size=sum(f.size or 0 for f in part.files))
    result.size = sum((r.size or 0) - (r.partial.stat().st_size if r.partial.exists() else 0)
                      for r in result.remotes if not r.target.exists())
    return result


def run(client, plan: Plan) -> None:
    """Transfer, check and place the files of `plan`."""
    source = plan.source
    if isinstance(source, HubRepo):
        for remote, file in zip(plan.remotes, plan.part.files):
            if not remote.target.exists():
                fetch(client, remote)
            hub.place(source, plan.commit or source.revision, file, remote.target)
    elif isinstance(source, DriveFolder):
        for remote in plan.remotes:
            fetch(client, remote)
        _check_release(plan)
    else:
        _from_modelscope(plan)


def _check_release(plan: Plan) -> None:
    """Strict loading of a downloaded release; its files are deleted if it fails."""
    from vidface.models.loading import check_release

    try:
        check_release(plan.part.into)
    except WeightsError as error:
        for file in plan.part.files:
            remove(plan.part.into / file.path)
        raise WeightsError(f"{error} (downloaded from {plan.source.name}; the files were deleted and not "
                           f"used)") from None


def _modelscope_package(source: ModelScopeRepo):
    try:
        from modelscope import snapshot_download
    except ImportError:
        raise WeightsError(f"{source.name} needs the modelscope package: pip install 'vidface[modelscope]'") from None
    return snapshot_download


def _from_modelscope(plan: Plan) -> None:
    """snapshot_download into a staging folder beside the target, then every file checked
    against its pinned size and SHA-256 before it is moved into place."""
    source = plan.source
    staging = plan.part.into.with_name(f".{plan.part.into.name}.modelscope")
    _modelscope_package(source)(source.model_id, revision=source.revision, local_dir=str(staging),
                                allow_patterns=[f.path for f in plan.part.files])
    for file in plan.part.files:
        path = staging / file.path
        wrong = (not path.is_file() or (file.size is not None and path.stat().st_size != file.size)
                 or (file.sha256 is not None and sha256_of(path) != file.sha256))
        if wrong:
            remove(staging)
            raise WeightsError(f"{file.path} from {source.name} is missing or differs from the pinned file "
                               f"(size or SHA-256); it was deleted and not used")
    for file in plan.part.files:
        target = plan.part.into / file.path
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging / file.path, target)
    remove(staging)
