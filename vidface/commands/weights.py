"""`vidface weights download|install|path|verify|convert`: fetch, install, locate, check and
convert OSDFace's weights."""

from __future__ import annotations

import argparse
from pathlib import Path

from vidface.commands.options import add_logging_flags, add_option_flags, options_from_flags


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "weights",
        help="download, install, locate, verify or convert the OSDFace weights",
        description="Manage OSDFace's weights: the release files (LoRA, embedder projection, embedder "
                    "checkpoint) and Stable Diffusion 2.1-base. vidface keeps them in $XDG_CACHE_HOME/vidface "
                    "(hub files in the Hugging Face cache: HF_HOME, HF_HUB_CACHE, HF_HUB_OFFLINE apply).",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    download = actions.add_parser(
        "download", help="fetch what is missing now (for a machine that goes offline later)",
        description="Download what is not on this machine yet, from the pinned sources (`vidface weights "
                    "path` lists them), checking every file, then print where the weights are. `vidface "
                    "restore` and `vidface faces` do the same by themselves on first use.")
    install = actions.add_parser(
        "install", help="check and install weights fetched by hand",
        description="Install weights you downloaded yourself: the OSDFace release folder (the authors' Drive "
                    "folder), a zip of it, a bundle from `vidface weights convert`, and/or a Stable Diffusion "
                    "2.1-base diffusers folder. Each is loaded strictly (every key and shape), then copied into "
                    "vidface's cache folder; afterwards `vidface restore IN OUT` needs no model flags.")
    install.add_argument("paths", nargs="+", metavar="PATH", type=Path, help="folder, zip or bundle")
    install.add_argument("--link", action="store_true", help="link to the files instead of copying them")
    path = actions.add_parser(
        "path", help="show what is installed, where, and the sources that would be tried",
        description="Print where each part of the weights is (or that it is missing) and the sources a "
                    "download would try, in order. Looks only at this machine.")
    verify = actions.add_parser(
        "verify", help="recheck the installed weights",
        description="Recheck the installed weights: the release by strict loading, the base's files against "
                    "their pinned SHA-256. Exits 1 if anything is damaged.")
    convert = actions.add_parser(
        "convert", help="write the release as one pickle-free safetensors bundle",
        description="Check the release files (strictly: every key and shape) and write OSDFace's own "
                    "tensors (UNet LoRA, embedder, projection) to OUT, one safetensors file that loads "
                    "without pickle: pass it to --weights or `vidface weights install` afterwards.")
    convert.add_argument("output", metavar="OUT", type=Path, help="bundle to write, e.g. osdface.safetensors")
    convert.add_argument("-y", "--overwrite", action="store_true", help="replace OUT if it exists")
    from vidface.models.options import ModelOptions

    add_option_flags(download, ModelOptions, only=("base", "weights_repo"))
    add_option_flags(path, ModelOptions, only=("weights", "base", "weights_repo"))
    add_option_flags(convert, ModelOptions, only=("weights", "weights_repo", "trust_pickle"))
    for sub in (download, install, path, verify, convert):
        add_logging_flags(sub)


def run(args: argparse.Namespace) -> int:
    return {"convert": _convert, "install": _install, "path": _path, "verify": _verify,
            "download": _download}[args.action](args)


def _model(args: argparse.Namespace):
    """The model options the flags given ask for (weights, base, hub repo, trust-pickle)."""
    from vidface.models.options import ModelOptions

    return options_from_flags(args, ModelOptions)


def _download(args: argparse.Namespace) -> int:
    from vidface.weights import resolve

    model = _model(args)
    location = resolve(None, model.base, model.weights_repo)
    print(f"release: {location.release}")
    print(f"base: {location.base}")
    return 0


def _install(args: argparse.Namespace) -> int:
    from vidface.weights.install import install

    for line in install(args.paths, link=args.link):
        print(line)
    return 0


def _path(args: argparse.Namespace) -> int:
    from vidface.downloads import cache_root, offline, offline_reason
    from vidface.models.ready import KEEP, ready_models, ready_root
    from vidface.weights import HubRepo, Part, hub, locate, size_text

    model = _model(args)
    found = locate(model.weights, model.base, model.weights_repo)
    for label, part in (("release", found.release), ("base", found.base)):
        if isinstance(part, Part):
            print(f"{label}: not on this machine; a download tries, in order:")
            for number, source in enumerate(part.sources, 1):
                into = hub.repo_folder(source.repo) if isinstance(source, HubRepo) else part.into
                print(f"  {number}. {source.name} ({source.page}) into {into}")
        else:
            print(f"{label}: {part}")
    ready = ready_models()
    print(f"ready models: {len(ready)} in {ready_root()} ({size_text(sum(size for _, size in ready))}; made from "
          f"the weights on a first run with each dtype, device kind and batch size, the {KEEP} most recently used "
          "kept; delete the folder to free the space)")
    print(f"caches: {cache_root()} (vidface), {hub.cache_root()} (hub files)"
          + (f"; downloads are off ({offline_reason()})" if offline() else ""))
    return 0


def _verify(args: argparse.Namespace) -> int:
    from vidface.weights.install import verify

    lines, sound = verify()
    for line in lines:
        print(line)
    return 0 if sound else 1


def _convert(args: argparse.Namespace) -> int:
    from vidface.errors import OutputError
    from vidface.models.loading import convert_release
    from vidface.weights import resolve_release

    output: Path = args.output
    if output.exists() and not args.overwrite:
        raise OutputError(f"{output} exists; pass -y to replace it")
    if not output.parent.is_dir():
        raise OutputError(f"folder {output.parent} does not exist; create it first")
    model = _model(args)
    release = resolve_release(model.weights, model.weights_repo)
    if release.is_file():
        raise OutputError(f"{release} is already a bundle; nothing to convert")
    print(convert_release(release, output, trust_pickle=model.trust_pickle))
    return 0
