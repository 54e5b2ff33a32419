"""GPU work that does not make the host wait: each stage's own stream, and host values sent to
the device behind the work already queued there.

A plain copy from pageable host memory to a GPU first waits until every kernel queued on its
stream has run. On the restorer's stream that is the batch in flight: the host would stop
there, and the GPU would then sit idle while the host prepares the next batch. Copies from
pinned memory are queued like kernels, so the host runs ahead of the GPU instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import torch

__all__ = ["stage_stream", "to_device"]


def stage_stream(device: str | torch.device) -> torch.cuda.Stream | None:
    """A CUDA stream of its own for a stage's GPU work (a `torch.cuda.Stream`), None off a GPU:
    on the default stream, which every thread shares, a stage's kernels and copies would queue
    behind the restorer's batches that another thread issues meanwhile. `torch.cuda.stream(None)`
    changes nothing, so callers use the result either way."""
    import torch

    return torch.cuda.Stream(device) if torch.device(device).type == "cuda" else None


def to_device(values: float | bool | list | np.ndarray, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """`values` (numbers, nested lists or an array) as a `dtype` tensor on `device`. On a GPU the
    copy is queued on the current stream from pinned memory, which torch's pinned-memory cache
    keeps until the copy has run; elsewhere a plain conversion."""
    import torch

    host = torch.as_tensor(values, dtype=dtype)
    if device.type != "cuda":
        return host.to(device)
    return host.pin_memory().to(device, non_blocking=True)
