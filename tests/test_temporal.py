"""Temporal stabilisation: latent blending, prompt (code distance) aggregation, mask smoothing."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vidface.errors import InputError
from vidface.metrics import temporal_flicker
from vidface.models.embedder import select_codes
from vidface.models.temporal import (CropRow, TemporalOptions, TemporalStabilizer, landmark_motion,
                                     landmark_shape_change)

from tiny_model import tiny_osdface, tiny_osdface_model, tiny_osdface_options  # noqa: F401 (fixtures)

C, H, W = 4, 16, 16


def smooth_latent(seed: int) -> torch.Tensor:
    """A C x H x W latent-like signal with spatial structure and unit standard deviation."""
    generator = torch.Generator().manual_seed(seed)
    x = F.avg_pool2d(torch.randn(1, C, H + 4, W + 4, generator=generator), 5, stride=1)[0]
    return x / x.std()


def noisy_sequence(signals: list[torch.Tensor], sigma: float, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.stack([s + sigma * torch.randn(s.shape, generator=generator) for s in signals])


def blend_one_by_one(stabilizer: TemporalStabilizer, latents: torch.Tensor, rows: list[CropRow]) -> torch.Tensor:
    return torch.cat([stabilizer.blend_latents(latents[i : i + 1], [row]) for i, row in enumerate(rows)])


def still_rows(count: int, track_id: int = 1, motion: float = 0.0) -> list[CropRow]:
    return [CropRow(track_id, t, motion) for t in range(count)]


def projection(x: torch.Tensor, old: torch.Tensor, new: torch.Tensor) -> float:
    """Where x lies between old (1.0) and new (0.0): the share of `old` left in x."""
    return float(((x - new) * (old - new)).sum() / (old - new).square().sum())


def test_blending_reduces_flicker_of_a_static_face() -> None:
    signal = smooth_latent(0)
    frames = noisy_sequence([signal] * 48, sigma=0.2, seed=1)
    out = TemporalStabilizer().blend_latents(frames, still_rows(48))
    ratio = temporal_flicker(out[8:].numpy()) / temporal_flicker(frames[8:].numpy())
    print(f"latent flicker with blending / without (default strength): {ratio:.3f}")
    assert ratio < 0.2
    # still faithful to the signal: the blended frames are closer to it than the raw ones
    assert (out[8:] - signal).square().mean() < 0.5 * (frames[8:] - signal).square().mean()


def test_stronger_blending_gives_less_flicker_and_more_lag() -> None:
    """The measured trade-off behind the default strength, on a slowly changing noisy latent.

    A fixed running average with weight s leaves (1-s)^2/(1+s) of the flicker and lags a ramp by
    s/(1-s) frames; the change gate lowers the weight a little, so flicker lies between that and
    the same formula at 0.75 s, and the lag stays under s/(1-s).
    """
    signal, drift = smooth_latent(2), smooth_latent(3)
    step = 0.02 * drift
    ramp = torch.stack([signal + t * step for t in range(60)])
    frames = noisy_sequence(list(ramp), sigma=0.1, seed=4)

    def fixed_average(s: float) -> float:
        return (1 - s) ** 2 / (1 + s)

    flickers, lags = [], []
    for strength in (0.3, 0.45, 0.6, 0.7, 0.8):
        out = TemporalStabilizer(TemporalOptions(strength=strength)).blend_latents(frames, still_rows(60))
        flicker = temporal_flicker((out - ramp)[10:].numpy()) / temporal_flicker((frames - ramp)[10:].numpy())
        lag = float(np.mean([projection(ramp[t] - out[t], step, torch.zeros_like(step)) for t in range(20, 60)]))
        print(f"strength {strength}: flicker ratio {flicker:.3f}, lag {lag:.2f} frames")
        assert fixed_average(strength) * 0.9 < flicker < fixed_average(0.75 * strength) * 1.1
        assert 0 < lag < strength / (1 - strength)
        if strength == TemporalOptions().strength:
            assert flicker < 0.2 and lag < 1.5
        flickers.append(flicker)
        lags.append(lag)
    assert flickers == sorted(flickers, reverse=True) and lags == sorted(lags)


def test_step_change_with_large_motion_is_followed_without_ghosting() -> None:
    before, after = smooth_latent(5), smooth_latent(6)
    # a change about as large as the flicker, so only the motion gate (not the latent-change
    # gate) can stop the blend
    after = before + 0.2 * (after - before)
    frames = noisy_sequence([before] * 10 + [after] * 3, sigma=0.2, seed=7)
    rows_still = still_rows(13)
    rows_moving = still_rows(10) + [CropRow(1, t, motion=0.4) for t in range(10, 13)]
    still = TemporalStabilizer().blend_latents(frames, rows_still)
    moving = TemporalStabilizer().blend_latents(frames, rows_moving)
    ghost_still = projection(still[10], before, after)
    ghost_moving = projection(moving[10], before, after)
    assert ghost_still > 0.4  # a still face keeps the past for a small change...
    assert ghost_moving < 0.01  # ...a fast-moving one does not


def test_large_latent_change_is_not_blended_even_when_still() -> None:
    """An expression change or an occlusion replaces the past where the latent changed."""
    before, after = smooth_latent(7), smooth_latent(8)
    frames = noisy_sequence([before] * 10 + [after] * 3, sigma=0.1, seed=9)
    out = TemporalStabilizer().blend_latents(frames, still_rows(13))
    assert projection(out[10], before, after) < 0.05
    # local change: only the lower half (mouth) changes; the upper half keeps blending
    local = before.clone()
    local[:, H // 2 :] = after[:, H // 2 :]
    frames = noisy_sequence([before] * 10 + [local], sigma=0.1, seed=10)
    out = TemporalStabilizer().blend_latents(frames, still_rows(11))
    lower = projection(out[10][:, H // 2 + 2 :], before[:, H // 2 + 2 :], local[:, H // 2 + 2 :])
    upper_noise_kept = (out[10][:, : H // 2 - 2] - before[:, : H // 2 - 2]).square().mean()
    upper_noise_raw = (frames[10][:, : H // 2 - 2] - before[:, : H // 2 - 2]).square().mean()
    assert lower < 0.05
    assert upper_noise_kept < 0.5 * upper_noise_raw


def test_reset_and_birth_start_from_the_current_latent() -> None:
    a, b = smooth_latent(11), smooth_latent(12)
    b = a + 0.1 * (b - a)  # close enough to be blended if the past were kept
    stabilizer = TemporalStabilizer()
    stabilizer.blend_latents(torch.stack([a] * 5), still_rows(5, track_id=1))
    # shot cut: the reset row's output is its own latent, exactly
    cut = stabilizer.blend_latents(b[None], [CropRow(1, 5, reset=True)])
    assert torch.equal(cut[0], b)
    # birth: a new track id in the same batch as a continuing one
    out = stabilizer.blend_latents(torch.stack([a, b]), [CropRow(1, 6), CropRow(2, 6)])
    assert torch.equal(out[1], b)
    assert not torch.equal(out[0], a)  # track 1 continued from b (after the cut): blended
    # a track unseen for more than max_gap frames starts afresh
    gap = TemporalOptions().max_gap + 1
    late = stabilizer.blend_latents(a[None], [CropRow(2, 6 + gap)])
    assert torch.equal(late[0], a)


def test_a_returning_face_continues_its_past_when_its_state_is_held() -> None:
    a, b = smooth_latent(11), smooth_latent(12)
    b = a + 0.1 * (b - a)
    gap = TemporalOptions().max_gap + 20
    held = TemporalStabilizer(forget_stale=False)
    held.blend_latents(torch.stack([a] * 5), still_rows(5, track_id=1))
    held.blend_latents(a[None], [CropRow(2, 5 + gap)])  # another face goes on meanwhile
    assert held.live_tracks == {1, 2}
    back = held.blend_latents(b[None], [CropRow(1, 5 + gap, returned=True)])
    assert not torch.equal(back[0], b) and (back[0] - a).abs().mean() < (b - a).abs().mean()
    far = held.blend_latents(b[None], [CropRow(1, 6 + gap, motion=1.0, returned=True)])
    assert torch.allclose(far[0], b, atol=1e-6)  # back somewhere else: next to nothing of the past
    # the same gap without `returned` starts afresh, and a stabiliser that forgets stale state has none
    assert torch.equal(held.blend_latents(b[None], [CropRow(2, 30 + gap)])[0], b)
    stale = TemporalStabilizer()
    stale.blend_latents(torch.stack([a] * 5), still_rows(5, track_id=1))
    stale.blend_latents(a[None], [CropRow(2, 5 + gap)])
    assert stale.live_tracks == {2}


def random_rows(seed: int, frames: int = 6, tracks: int = 3) -> list[CropRow]:
    """Rows in frame order: in each frame a random subset of tracks, random motion and resets."""
    rng = random.Random(seed)
    rows = []
    for t in range(frames):
        for track in rng.sample(range(tracks), rng.randint(1, tracks)):
            rows.append(CropRow(track, t, motion=rng.uniform(0, 0.15), reset=rng.random() < 0.1))
    return rows


@pytest.mark.parametrize("seed", [0, 1])
def test_batch_equals_row_by_row(seed: int) -> None:
    rows = random_rows(seed)
    generator = torch.Generator().manual_seed(seed)
    latents = torch.randn(len(rows), C, H, W, generator=generator)
    distances = torch.rand(len(rows), 32, 64, generator=generator)
    masks = torch.rand(len(rows), 1, 24, 24, generator=generator)
    # split the rows into batches of uneven sizes, as the pipeline's batching does
    cuts = [0, 1, 5, len(rows)]
    batched, sequential = TemporalStabilizer(), TemporalStabilizer()
    for name, values in (("blend_latents", latents), ("stabilize_distances", distances), ("smooth_masks", masks)):
        got = torch.cat([getattr(batched, name)(values[i:j], rows[i:j]) for i, j in zip(cuts, cuts[1:])])
        want = torch.cat([getattr(sequential, name)(values[i : i + 1], [row]) for i, row in enumerate(rows)])
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
        assert not torch.allclose(got, values)  # something was blended


def test_rows_out_of_frame_order_are_refused() -> None:
    stabilizer = TemporalStabilizer()
    latents = torch.zeros(2, C, H, W)
    with pytest.raises(ValueError, match="increasing frame order"):
        stabilizer.blend_latents(latents, [CropRow(1, 3), CropRow(1, 2)])
    stabilizer.blend_latents(latents[:1], [CropRow(1, 3)])
    with pytest.raises(ValueError, match="increasing frame order"):
        stabilizer.blend_latents(latents[:1], [CropRow(1, 3)])
    with pytest.raises(ValueError, match="2 rows but 1"):
        stabilizer.blend_latents(latents, [CropRow(1, 4)])


def test_state_is_bounded_to_live_tracks() -> None:
    stabilizer = TemporalStabilizer()
    max_gap = stabilizer.options.max_gap
    latents = torch.randn(3, C, H, W)
    stabilizer.blend_latents(latents, [CropRow(1, 0), CropRow(2, 0), CropRow(3, 0)])
    stabilizer.smooth_masks(torch.rand(1, 8, 8), [CropRow(3, 0)])
    assert stabilizer.live_tracks == {1, 2, 3}
    stabilizer.forget([2, 99])
    assert stabilizer.live_tracks == {1, 3}
    # a long video of track 1 alone: track 3 falls out of every bank after max_gap frames
    for t in range(1, max_gap + 2):
        stabilizer.blend_latents(latents[:1], [CropRow(1, t)])
        stabilizer.smooth_masks(torch.rand(1, 8, 8), [CropRow(1, t)])
    assert stabilizer.live_tracks == {1}


def test_strength_zero_turns_everything_off() -> None:
    stabilizer = TemporalStabilizer(TemporalOptions(strength=0.0))
    rows = still_rows(4)
    latents, distances, masks = torch.randn(4, C, H, W), torch.rand(4, 10, 20), torch.rand(4, 8, 8)
    assert stabilizer.blend_latents(latents, rows) is latents
    assert stabilizer.stabilize_distances(distances, rows) is distances
    assert stabilizer.smooth_masks(masks, rows) is masks
    assert stabilizer.live_tracks == set()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_inputs_keep_their_dtype(dtype: torch.dtype) -> None:
    signal = smooth_latent(13)
    frames = noisy_sequence([signal] * 24, sigma=0.2, seed=14)
    reference = TemporalStabilizer().blend_latents(frames, still_rows(24))
    out = TemporalStabilizer().blend_latents(frames.to(dtype), still_rows(24))
    assert out.dtype == dtype
    torch.testing.assert_close(out.float(), reference, atol=0.05, rtol=0.05)


def test_mask_smoothing_steadies_masks_and_follows_motion() -> None:
    generator = torch.Generator().manual_seed(15)
    base = torch.zeros(24, 24)
    base[4:20, 4:20] = 1.0
    masks = (base + 0.2 * torch.randn(16, 24, 24, generator=generator)).clamp(0, 1)
    out = TemporalStabilizer().smooth_masks(masks, still_rows(16))
    assert out.min() >= 0 and out.max() <= 1
    assert temporal_flicker(out.numpy()) < 0.6 * temporal_flicker(masks.numpy())
    moved = TemporalStabilizer()
    moved.smooth_masks(masks[:1], [CropRow(1, 0)])
    fast = moved.smooth_masks(torch.zeros(1, 24, 24), [CropRow(1, 1, motion=0.5)])
    assert float(fast.max()) < 0.01


def selected_code_sets(distances: torch.Tensor, count: int) -> list[frozenset[int]]:
    """The embedder's own choice of `count` codes per row, as sets (unfilled slots dropped)."""
    return [frozenset(c for c in row if c >= 0) for row in select_codes(distances, count).tolist()]


def test_code_selection_flips_less_with_aggregated_distances() -> None:
    """Near-identical frames: the chosen code set changes less from frame to frame."""
    generator = torch.Generator().manual_seed(16)
    positions, codes, dim, frames, count = 64, 256, 16, 30, 20
    features = torch.randn(positions, dim, generator=generator)
    codebook = torch.randn(codes, dim, generator=generator)
    per_frame = features + 0.15 * torch.randn(frames, positions, dim, generator=generator)
    distances = torch.cdist(per_frame, codebook.expand(frames, -1, -1)).square()
    rows = still_rows(frames)
    stable = TemporalStabilizer().stabilize_distances(distances, rows)
    assert stable.shape == distances.shape and stable.dtype == distances.dtype

    def flips(d: torch.Tensor) -> float:
        sets = selected_code_sets(d, count)
        return float(np.mean([len(a ^ b) / 2 for a, b in zip(sets, sets[1:])]))

    raw_flips, stable_flips = flips(distances[5:]), flips(stable[5:])
    print(f"codes changed per frame: {raw_flips:.2f} raw, {stable_flips:.2f} aggregated")
    assert raw_flips > 1  # the raw choice does flip between near-identical frames
    assert stable_flips < 0.5 * raw_flips


def test_invalid_options_name_the_value() -> None:
    with pytest.raises(InputError, match=r"strength must be in \[0, 1\].*got 1.5"):
        TemporalOptions(strength=1.5)
    with pytest.raises(InputError, match="prompt_momentum"):
        TemporalOptions(prompt_momentum=1.0)
    with pytest.raises(InputError, match="max_gap"):
        TemporalOptions(max_gap=0)


def test_temporal_flicker_measures_frame_to_frame_variance() -> None:
    still = np.full((5, 4, 4, 3), 7, dtype=np.uint8)
    assert temporal_flicker(still) == 0.0
    alternating = np.zeros((6, 4, 4, 3))
    alternating[1::2] = 2.0
    assert temporal_flicker(alternating) == pytest.approx(2.0)
    mask = np.zeros((4, 4, 1))
    mask[:2] = 1.0
    half = alternating.copy()
    half[:, 2:] = 0.0  # flicker only where the mask is 1
    assert temporal_flicker(half, mask) == pytest.approx(2.0)
    assert temporal_flicker(half) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="at least 2 frames"):
        temporal_flicker(still[:1])


def test_landmark_motion_is_displacement_relative_to_face_size() -> None:
    landmarks = np.array([[40.0, 50], [60, 50], [50, 60], [42, 70], [58, 70]])
    box = np.array([30.0, 30, 70, 110])  # 40 x 80: size 80
    assert landmark_motion(landmarks, landmarks, box) == 0.0
    assert landmark_motion(landmarks, landmarks + [3.0, 4.0], box) == pytest.approx(5.0 / 80)
    # only one point moves (a mouth corner): RMS over the five points
    moved = landmarks.copy()
    moved[3] += [0.0, 10.0]
    assert landmark_motion(landmarks, moved, box) == pytest.approx(np.sqrt(100 / 5) / 80)
    with pytest.raises(ValueError, match="same shape"):
        landmark_motion(landmarks, landmarks[:4], box)
    with pytest.raises(ValueError, match="positive size"):
        landmark_motion(landmarks, landmarks, np.array([5.0, 5, 5, 5]))


def test_shape_change_ignores_moves_turns_and_zooms() -> None:
    landmarks = np.array([[40.0, 50], [60, 50], [50, 60], [42, 70], [58, 70]])
    box = np.array([30.0, 30, 70, 110])
    angle = np.radians(20)
    turned = 1.3 * landmarks @ np.array([[np.cos(angle), np.sin(angle)], [-np.sin(angle), np.cos(angle)]]) + [90, -15]
    assert landmark_motion(landmarks, turned, box) > 0.5
    assert landmark_shape_change(landmarks, turned, box) == pytest.approx(0.0, abs=1e-9)
    opened = turned.copy()
    opened[3:] += [0.0, 12.0]  # the mouth opens as well
    assert landmark_shape_change(landmarks, opened, box) > 0.02


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_gives_the_cpu_result() -> None:
    rows = random_rows(3)
    generator = torch.Generator().manual_seed(3)
    latents = torch.randn(len(rows), C, H, W, generator=generator)
    cpu = TemporalStabilizer().blend_latents(latents, rows)
    gpu = TemporalStabilizer().blend_latents(latents.cuda().half(), rows)
    assert gpu.device.type == "cuda" and gpu.dtype == torch.float16
    torch.testing.assert_close(gpu.float().cpu(), cpu, atol=0.02, rtol=0.02)


def test_tiny_model_restores_a_still_face_with_less_flicker(tiny_osdface_model) -> None:
    """The model's split steps with stabilisation between them, on a still degraded face."""
    import skimage.data
    from face_clips import ASTRONAUT_LANDMARKS, degrade

    from vidface.faces.align import face_crop, warp_face
    from vidface.faces.paste import crop_mask

    size, count = 64, 10
    face = warp_face(skimage.data.astronaut(), face_crop(ASTRONAUT_LANDMARKS, size=size))
    rng = np.random.default_rng(0)
    frames = np.stack([degrade(face, rng) for _ in range(count)])  # fresh noise and JPEG per frame
    images = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
    model, rows = tiny_osdface_model, still_rows(count)
    latents, distances = model.encode(images), model.code_distances(images)
    off = model.decode(model.denoise(latents, model.prompt_from_distances(distances)))
    stabilizer = TemporalStabilizer()
    prompt = model.prompt_from_distances(stabilizer.stabilize_distances(distances, rows))
    on = model.decode(stabilizer.blend_latents(model.denoise(latents, prompt), rows))
    mask = crop_mask(size)[..., None]
    flicker_on = temporal_flicker(on[2:].permute(0, 2, 3, 1).numpy(), mask)
    flicker_off = temporal_flicker(off[2:].permute(0, 2, 3, 1).numpy(), mask)
    print(f"tiny model, restored face flicker with stabilisation / without: {flicker_on / flicker_off:.3f}")
    assert flicker_on < 0.5 * flicker_off
    assert on.shape == off.shape == images.shape
