"""The ready model: the restorer's networks exported once (torch.export) in a run's dtype, on its
kind of device and at its batch size, so that later runs load them with torch alone.

Building OSDFace from the release and the base imports diffusers and peft, builds the networks
in float32, merges the LoRA, then casts and moves them: most of a run's start-up. A ready model
holds the merged networks in their final dtype and loads its weights straight onto the device.
Its programs take exactly ``batch`` faces of the model's face size (a static batch: OSDFace
pads the last batch), the fixed shapes that compilation and CUDA graphs want too.

Layout: ``$XDG_CACHE_HOME/vidface/ready/<key>/`` holds ``encoder``, ``noise`` and ``decoder``
as graph files (`vidface.models.graph_file`: ``.json`` and ``.safetensors``; a load needs neither
torch.export's stack nor its deserialiser), ``embedder.safetensors`` and ``model.json`` (the
constants and the embedder's configuration). The key covers what the
programs depend on: the weight files (path, size, modification time), dtype, device kind, batch,
and the torch and vidface versions. A folder appears whole (written aside, then renamed); the
:data:`KEEP` most recently used stay.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

from typing import TYPE_CHECKING

from vidface import __version__
from vidface.downloads import cache_root
from vidface.files import (SCRATCH_PREFIX, forget_least_recently_used, mark_used, most_recently_used_first,
                           publish_folder, scratch_folder)
from vidface.weights import RELEASE_FILES, WeightsLocation

if TYPE_CHECKING:  # torch is imported where a model is made or loaded: listing them needs none of it
    import torch
    from torch import nn

    from vidface.models.embedder import VisualRepresentationEmbedder
    from vidface.models.osdface import OSDFace

__all__ = ["KEEP", "load_ready", "ready_folder", "ready_models", "save_ready"]

log = logging.getLogger(__name__)

KEEP = 3
"""Ready models kept (about 2 GB each at full size in 16-bit): a machine's usual settings, and a change."""

_FORMAT = "2"
_NETWORKS = ("encoder", "noise", "decoder")
_BASE_PARTS = ("unet", "vae", "scheduler")


def ready_root() -> Path:
    return cache_root() / "ready"


def ready_models() -> list[tuple[Path, int]]:
    """The ready models on this machine, most recently used first, each with its size in bytes."""
    return [(folder, sum(file.stat().st_size for file in folder.iterdir() if file.is_file()))
            for folder in most_recently_used_first(_ready_folders())]


def _ready_folders() -> list[Path]:
    """The complete ready models (a scratch folder being written holds a model.json before it is
    published whole)."""
    root = ready_root()
    if not root.is_dir():
        return []
    return [path for path in root.iterdir()
            if not path.name.startswith(SCRATCH_PREFIX) and (path / "model.json").is_file()]


def _weight_files(location: WeightsLocation) -> list[Path]:
    release = location.release
    files = [release] if release.is_file() else [release / name for name in RELEASE_FILES]
    for part in _BASE_PARTS:
        files += sorted(path for path in (location.base / part).rglob("*") if path.is_file())
    return files


def ready_folder(location: WeightsLocation, device: torch.device, dtype: torch.dtype, batch: int) -> Path:
    """Where the ready model for these weights and settings lives (whether or not it exists)."""
    import torch

    identity = [_FORMAT, __version__, torch.__version__, device.type, str(dtype), str(batch)]
    for path in map(Path.resolve, _weight_files(location)):
        stat = path.stat()
        identity.append(f"{path}:{stat.st_size}:{stat.st_mtime_ns}")
    return ready_root() / hashlib.sha256("\n".join(identity).encode()).hexdigest()[:24]


def save_ready(model: OSDFace, folder: Path, batch: int) -> None:
    """Export `model`'s networks at `batch` faces and write them as the ready model `folder`.

    Raises what torch.export raises for a network it cannot export, and ValueError for one whose
    graph a graph file cannot hold; writes nothing then.
    """
    import torch

    from vidface.models.graph_file import save_graph

    size = model.face_size
    images = torch.zeros(batch, 3, size, size, device=model.device, dtype=model.dtype)
    encoder = torch.export.export(model.encoder, (images,))
    latents = torch.zeros(_output_shape(encoder), device=model.device, dtype=model.dtype)
    config = model.embedder.config
    prompt = torch.zeros(batch, config.num_codes, config.prompt_dim, device=model.device, dtype=model.dtype)
    programs = {"encoder": encoder, "noise": torch.export.export(model.noise, (latents, prompt)),
                "decoder": torch.export.export(model.decoder, (latents,))}
    from safetensors.torch import save_file

    folder.parent.mkdir(parents=True, exist_ok=True)
    with scratch_folder(folder.parent) as partial:
        for name, program in programs.items():
            save_graph(program, partial / f"{name}.json")
        save_file({key: value.contiguous() for key, value in model.embedder.state_dict().items()},
                  str(partial / "embedder.safetensors"))
        constants = {"format": _FORMAT, "batch": batch, "timestep": model.timestep,
                     "alpha_prod": model.alpha_prod, "scaling_factor": model.scaling_factor,
                     "size_multiple": model.size_multiple, "embedder": vars(config)}
        (partial / "model.json").write_text(json.dumps(constants, indent=1))
        publish_folder(partial, folder)
    forget_least_recently_used(_ready_folders(), folder, KEEP)


def load_ready(folder: Path, device: torch.device) -> OSDFace | None:
    """The ready model in `folder` on `device`, or None if there is none. A damaged or
    unreadable one is removed (and None returned), so the next run writes it again."""
    from vidface.models.osdface import OSDFace

    if not (folder / "model.json").is_file():
        return None
    try:
        constants = json.loads((folder / "model.json").read_text())
        networks = [_load_network(folder / f"{name}.json", device) for name in _NETWORKS]
        embedder = _load_embedder(folder / "embedder.safetensors", constants["embedder"], device)
        model = OSDFace(*networks, embedder, alpha_prod=constants["alpha_prod"],
                        scaling_factor=constants["scaling_factor"], size_multiple=constants["size_multiple"],
                        timestep=constants["timestep"], batch_size=constants["batch"], static_batch=True)
    except Exception as error:  # a damaged file: torch, safetensors and json raise many kinds
        log.warning("the ready model in %s cannot be loaded (%s); it is made again",
                    folder, (str(error) or type(error).__name__).splitlines()[0])
        shutil.rmtree(folder, ignore_errors=True)
        return None
    mark_used(folder)
    return model.requires_grad_(False)


def _output_shape(program: torch.export.ExportedProgram) -> tuple[int, ...]:
    output = next(node for node in program.graph.nodes if node.op == "output")
    return tuple(output.args[0][0].meta["val"].shape)


def _load_network(path: Path, device: torch.device) -> nn.Module:
    import torch

    from vidface.models.graph_file import load_graph

    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return load_graph(path, device)


def _load_embedder(path: Path, config: dict, device: torch.device) -> VisualRepresentationEmbedder:
    import torch
    from safetensors.torch import load_file

    from vidface.models.embedder import VisualRepresentationEmbedder

    with torch.device("meta"):  # no random initialisation: every weight comes from the file
        embedder = VisualRepresentationEmbedder(**config)
    embedder.load_state_dict(load_file(str(path), device=str(device)), strict=True, assign=True)
    return embedder.eval()
