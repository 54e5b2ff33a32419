"""Where OSDFace's weights live: local folders, else the Hugging Face hub cache.

Two parts are needed:

* the OSDFace release: ``pytorch_lora_weights.safetensors``, ``embedding_change_weights.pth``
  and ``associate_2.ckpt`` in one folder (``--weights DIR``), or the single pickle-free bundle
  that ``vidface weights convert`` writes (``--weights FILE.safetensors`` or a folder holding
  ``osdface.safetensors``); without ``--weights``, the hub repo ``--weights-repo`` (default
  :data:`DEFAULT_WEIGHTS_REPO`, or the ``VIDFACE_WEIGHTS_REPO`` environment variable);
* Stable Diffusion 2.1-base (UNet, VAE, scheduler config): ``--base`` as a local diffusers
  folder or a hub id (default :data:`DEFAULT_BASE`, or ``VIDFACE_BASE``).

Hub files go through huggingface_hub into its standard cache, so HF_HOME, HF_HUB_CACHE,
HF_HUB_OFFLINE and HF_ENDPOINT work as usual. Nothing is written anywhere else. When files
are missing and cannot be downloaded, one error names every missing file and the remedy.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from vidface.errors import WeightsError

__all__ = [
    "BASE_FILES", "BUNDLE_FILE", "DEFAULT_BASE", "DEFAULT_WEIGHTS_REPO", "EMBEDDER_FILE", "LORA_FILE",
    "PROJECTION_FILE", "RELEASE_FILES", "WeightsLocation", "base_id", "resolve", "resolve_release", "weights_repo",
]

DEFAULT_BASE = "stabilityai/stable-diffusion-2-1-base"
DEFAULT_WEIGHTS_REPO = "jkwang28/OSDFace"
BASE_ENV = "VIDFACE_BASE"
WEIGHTS_REPO_ENV = "VIDFACE_WEIGHTS_REPO"

LORA_FILE = "pytorch_lora_weights.safetensors"
PROJECTION_FILE = "embedding_change_weights.pth"
EMBEDDER_FILE = "associate_2.ckpt"
RELEASE_FILES = (LORA_FILE, PROJECTION_FILE, EMBEDDER_FILE)
BUNDLE_FILE = "osdface.safetensors"
BASE_FILES = (
    "unet/config.json",
    "unet/diffusion_pytorch_model.safetensors",
    "vae/config.json",
    "vae/diffusion_pytorch_model.safetensors",
    "scheduler/scheduler_config.json",
)


@dataclass(frozen=True)
class WeightsLocation:
    """release: a folder with RELEASE_FILES, or a bundle file; base: a diffusers folder."""

    release: Path
    base: Path

    @property
    def is_bundle(self) -> bool:
        return self.release.is_file()


def base_id(base: str | None) -> str:
    return base or os.environ.get(BASE_ENV) or DEFAULT_BASE


def weights_repo(repo: str | None) -> str:
    return repo or os.environ.get(WEIGHTS_REPO_ENV) or DEFAULT_WEIGHTS_REPO


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
                           f"(https://github.com/jkwang28/OSDFace, 'pretrained models') into it")
    return path


def _local_base(base: str) -> Path | None:
    path = Path(base).expanduser()
    if not path.is_dir():
        if path.exists() or base.startswith((".", "/", "~")) or base.count("/") > 1:
            raise WeightsError(f"--base {base} is neither a diffusers folder nor a hub id like {DEFAULT_BASE}")
        return None
    def present(name: str) -> bool:  # local folders may hold .bin weights instead of .safetensors
        return (path / name).is_file() or (name.endswith(".safetensors") and
                                           (path / name).with_suffix(".bin").is_file())

    missing = [name for name in BASE_FILES if not present(name)]
    if missing:
        raise WeightsError(f"--base {path} is not a Stable Diffusion 2.1-base diffusers folder: it lacks "
                           f"{', '.join(missing)}")
    return path


def _hub_files(repo: str, names: tuple[str, ...], local_only: bool, missing: list[str]) -> Path | None:
    """Download (or find in the cache) every file of a hub repo; return the snapshot folder.

    Files that are neither cached nor downloadable are appended to ``missing`` as repo/name.
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        GatedRepoError, HfHubHTTPError, LocalEntryNotFoundError, RemoteEntryNotFoundError, RepositoryNotFoundError,
    )

    folder = None
    for name in names:
        try:
            path = Path(hf_hub_download(repo, name, local_files_only=local_only))
        except LocalEntryNotFoundError:
            missing.append(f"{repo}/{name}")
            continue
        except GatedRepoError:
            raise WeightsError(f"hub repo {repo} is gated: accept its licence on huggingface.co and log in "
                               f"(`hf auth login`), or pass a local folder") from None
        except RepositoryNotFoundError:
            raise WeightsError(f"hub repo {repo} does not exist (or is private); set the repo with --weights-repo/"
                               f"--base, or pass local folders") from None
        except RemoteEntryNotFoundError:
            raise WeightsError(f"hub repo {repo} has no file {name}; pass a repo or local folder that has it") from None
        except HfHubHTTPError as error:
            raise WeightsError(f"downloading {name} from hub repo {repo} failed: {str(error).splitlines()[0]}") from None
        folder = Path(*path.parts[: len(path.parts) - len(Path(name).parts)])
    return folder


def resolve_release(weights: str | None = None, repo: str | None = None, local_only: bool = False) -> Path:
    """The release folder (or bundle file): ``weights`` if given, else from the hub repo."""
    if weights:
        return _local_release(weights)
    missing: list[str] = []
    folder = _hub_files(weights_repo(repo), RELEASE_FILES, local_only, missing)
    if missing:
        raise _missing_error(missing, local_only)
    return folder


def resolve(weights: str | None = None, base: str | None = None, repo: str | None = None,
            local_only: bool = False) -> WeightsLocation:
    """Find (downloading where allowed) the release and the base model.

    local_only: never touch the network, only local folders and the hub cache.
    Raises WeightsError naming every missing file (of both parts) and how to get it.
    """
    missing: list[str] = []
    release = _local_release(weights) if weights else _hub_files(weights_repo(repo), RELEASE_FILES, local_only, missing)
    base_name = base_id(base)
    base_path = _local_base(base_name) or _hub_files(base_name, BASE_FILES, local_only, missing)
    if missing:
        raise _missing_error(missing, local_only)
    return WeightsLocation(release=release, base=base_path)


def _missing_error(missing: list[str], local_only: bool) -> WeightsError:
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        why = "offline (HF_HUB_OFFLINE is set)"
    elif local_only:
        why = "only local files were searched"
    else:
        why = "they could not be downloaded (no connection to the hub?)"
    return WeightsError(
        f"model weights missing: {', '.join(missing)} are not in the hub cache {constants.HF_HUB_CACHE} and "
        f"{why}; run `vidface weights download` on a machine with internet (same HF_HOME), or pass local "
        f"folders with --weights DIR (the OSDFace release files) and --base DIR (SD 2.1-base, diffusers layout)")
