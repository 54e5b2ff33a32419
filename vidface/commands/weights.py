"""`vidface weights download|path|convert`: fetch, locate and convert OSDFace's weights."""

from __future__ import annotations

import argparse
from pathlib import Path

from vidface.commands.options import add_logging_flags, add_weights_flags


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "weights",
        help="download, locate or convert the OSDFace weights",
        description="Manage OSDFace's weights: the release files (LoRA, embedder projection, "
                    "embedder checkpoint) and Stable Diffusion 2.1-base. Hub downloads go to the "
                    "Hugging Face cache (HF_HOME, HF_HUB_CACHE, HF_HUB_OFFLINE apply).",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    download = actions.add_parser(
        "download", help="fetch every file into the Hugging Face cache (for machines that go offline later)",
        description="Download the OSDFace release files from --weights-repo and SD 2.1-base from --base "
                    "into the Hugging Face cache, then print where they are. Files already cached are not "
                    "downloaded again.")
    path = actions.add_parser(
        "path", help="print where the weights are, without downloading",
        description="Print the release folder (or bundle) and the base model folder that `vidface faces` "
                    "and `vidface restore` would use. Looks only at local folders and the cache.")
    convert = actions.add_parser(
        "convert", help="write the release as one pickle-free safetensors bundle",
        description="Check the release files (strictly: every key and shape) and write OSDFace's own "
                    "tensors (UNet LoRA, embedder, projection) to OUT, one safetensors file that loads "
                    "without pickle: pass it to --weights afterwards.")
    convert.add_argument("output", metavar="OUT", type=Path, help="bundle to write, e.g. osdface.safetensors")
    convert.add_argument("-y", "--overwrite", action="store_true", help="replace OUT if it exists")
    add_weights_flags(download, ("base", "weights-repo"))
    add_weights_flags(path, ("weights", "base", "weights-repo"))
    add_weights_flags(convert, ("weights", "weights-repo", "trust-pickle"))
    for sub in (download, path, convert):
        add_logging_flags(sub)


def run(args: argparse.Namespace) -> int:
    from vidface import weights

    if args.action == "convert":
        return _convert(args)
    location = weights.resolve(getattr(args, "weights", None), args.base, args.weights_repo,
                               local_only=args.action == "path")
    print(f"release: {location.release}")
    print(f"base: {location.base}")
    return 0


def _convert(args: argparse.Namespace) -> int:
    from vidface.errors import OutputError
    from vidface.models.loading import convert_release
    from vidface.weights import resolve_release

    output: Path = args.output
    if output.exists() and not args.overwrite:
        raise OutputError(f"{output} exists; pass -y to replace it")
    if not output.parent.is_dir():
        raise OutputError(f"folder {output.parent} does not exist; create it first")
    release = resolve_release(args.weights, args.weights_repo)
    if release.is_file():
        raise OutputError(f"{release} is already a bundle; nothing to convert")
    print(convert_release(release, output, trust_pickle=args.trust_pickle))
    return 0
