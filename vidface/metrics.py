"""Measures of restoration quality over time, shared by tests and benchmarks."""

from __future__ import annotations

from typing import Any

import numpy as np


def temporal_flicker(frames: Any, mask: Any = None) -> float:
    """Mean frame-to-frame temporal variance of a sequence, optionally inside a mask.

    frames: time-first array (numpy, or anything ``np.asarray`` takes, such as a CPU torch
        tensor) of T >= 2 frames, T x ... (e.g. T x H x W x 3 RGB crops in aligned-crop space,
        uint8 in [0, 255] or float, or T x C x h x w latents). Values are taken as they are:
        compare sequences in the same range.
    mask: optional weights broadcastable to one frame (e.g. H x W x 1 or H x W for H x W x 3
        frames), such as the paste mask of the face region; the mean is weighted by it.

    Returns the weighted mean over elements and time of ``(x[t+1] - x[t])**2 / 2``, which is the
    per-frame variance for independent noise on a still image; 0 for a still sequence.
    """
    x = np.asarray(frames, dtype=np.float64)
    if x.ndim < 2 or x.shape[0] < 2:
        raise ValueError(f"frames must be time-first with at least 2 frames, got shape {x.shape}")
    squared = 0.5 * np.square(np.diff(x, axis=0))
    if mask is None:
        return float(squared.mean())
    weight = np.broadcast_to(np.asarray(mask, dtype=np.float64), x.shape[1:])
    total = weight.sum() * squared.shape[0]
    if total <= 0:
        raise ValueError("mask is zero everywhere: no region to measure flicker in")
    return float((squared * weight).sum() / total)
