"""The embedded CenterFace detector on the astronaut photo and the synthetic clips, and the
whole tracking stage end to end with it."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data

from face_clips import (ASTRONAUT_LANDMARKS, CountingPasses, Picture, background, crop_error, error_parts, id_switches,
                        jitter, match_tracks, moving_face_clip, shot_cut_clip)
from vidface.errors import InputError, WeightsError
from vidface.faces import centerface
from vidface.faces.detect import DETECTORS, REFINE_POSITIONS, RefinedDetector, create_detector
from vidface.faces.options import FaceOptions
from vidface.faces.track import track_faces


@pytest.fixture(scope="module")
def detector():
    return create_detector("centerface")


def test_finds_the_astronaut_with_landmarks_in_template_order(detector) -> None:
    faces = detector.detect(skimage.data.astronaut())
    assert len(faces) == 1 and faces[0].score > 0.8
    marks = faces[0].landmarks
    assert np.linalg.norm(marks - ASTRONAUT_LANDMARKS, axis=1).max() < 4.0
    assert marks[0, 0] < marks[1, 0] and marks[3, 0] < marks[4, 0]  # left (as seen) first
    assert marks[:2, 1].max() < marks[2, 1] < marks[3:, 1].min()  # eyes, nose, mouth
    x1, y1, x2, y2 = faces[0].box
    assert x1 < marks[:, 0].min() and marks[:, 0].max() < x2 and y1 < marks[:, 1].min() and marks[:, 1].max() < y2


def test_the_prepared_graph_is_made_once_and_again_when_damaged(tmp_path, monkeypatch, caplog) -> None:
    """CenterFace's graph with symbolic dimensions is kept in the cache after the first detector,
    so later ones skip onnx's graph editing; a damaged file is made again, with a warning, and a
    cache that cannot be written gives the graph's bytes."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    model = centerface.centerface_model_path()
    reference = centerface.CenterFaceDetector().detect(skimage.data.astronaut())
    prepared = centerface.prepared_model(model)
    assert isinstance(prepared, Path) and list((tmp_path / "cache" / "vidface" / "centerface").iterdir()) == [prepared]
    with monkeypatch.context() as patch:
        patch.setattr(centerface, "dynamic_model", lambda path: pytest.fail("the graph was edited again"))
        assert centerface.prepared_model(model) == prepared
        again = centerface.CenterFaceDetector().detect(skimage.data.astronaut())
    assert len(again) == len(reference) == 1 and np.array_equal(again[0].landmarks, reference[0].landmarks)
    prepared.write_bytes(b"not a graph")
    with caplog.at_level(logging.WARNING, logger="vidface.faces.onnx_graphs"):
        repaired = centerface.CenterFaceDetector().detect(skimage.data.astronaut())
    assert "cannot be read" in caplog.text and np.array_equal(repaired[0].landmarks, reference[0].landmarks)
    assert prepared.stat().st_size > 1_000_000
    (tmp_path / "not-a-folder").write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "not-a-folder"))
    assert isinstance(centerface.prepared_model(model), bytes)


def test_old_graphs_of_a_kind_are_removed_as_a_new_one_is_made(tmp_path, monkeypatch) -> None:
    """The cache keeps the KEEP most recently used graphs of a kind: one read again counts as
    used, and the least recently used goes when a new one is made."""
    import os

    from vidface.faces import onnx_graphs

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    source = tmp_path / "model.bin"
    source.write_bytes(b"weights")

    def made(version: int) -> Path:
        graph = onnx_graphs.made_graph("kind", source, str(version), lambda path: b"graph %d" % version)
        assert isinstance(graph, Path) and graph.read_bytes() == b"graph %d" % version
        return graph

    graphs = [made(version) for version in range(onnx_graphs.KEEP)]
    for age, graph in enumerate(graphs):  # made in turn, long ago
        os.utime(graph, ns=(age * 10**9, age * 10**9))
    assert made(0) == graphs[0]  # read again: now the most recently used
    newest = made(onnx_graphs.KEEP)
    assert sorted(graphs[0].parent.iterdir()) == sorted([graphs[0], *graphs[2:], newest])


def test_centerface_in_torch_matches_onnxruntime() -> None:
    """The torch runtime (a GPU's) runs the same prepared graph: the same outputs to float
    rounding on a random batch, the same face, landmarks and score on the astronaut."""
    on_onnxruntime, in_torch = centerface.CenterFaceDetector(), centerface.CenterFaceDetector(runtime="torch")
    blob = np.random.default_rng(0).uniform(0, 255, (2, 3, 96, 128)).astype(np.float32)
    for ours, reference in zip(in_torch.network_outputs(blob), on_onnxruntime.network_outputs(blob)):
        assert ours.shape == reference.shape == (2, ours.shape[1], 24, 32)
        np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-3)
    photo = skimage.data.astronaut()
    [ours], [reference] = in_torch.detect(photo), on_onnxruntime.detect(photo)
    assert np.abs(ours.landmarks - reference.landmarks).max() < 0.01 and ours.score == pytest.approx(reference.score)
    with pytest.raises(ValueError, match="CPU here"):
        centerface.CenterFaceDetector(runtime="onnxruntime", device="cuda")


def test_a_graph_with_operators_torch_does_not_run_is_refused() -> None:
    from onnx import TensorProto, helper

    from vidface.faces.centerface_torch import CenterFaceNetwork

    graph = helper.make_graph([helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2])], "pool",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 2, 2])])
    with pytest.raises(WeightsError, match="operators torch cannot run here: MaxPool"):
        CenterFaceNetwork(helper.make_model(graph).SerializeToString())


def test_downscaled_detection_maps_back_to_frame_pixels() -> None:
    big = cv2.resize(skimage.data.astronaut(), (1280, 1280), interpolation=cv2.INTER_CUBIC)
    faces = create_detector("centerface", max_side=512, refine=False).detect(big)
    assert len(faces) == 1
    assert np.linalg.norm(faces[0].landmarks - ASTRONAUT_LANDMARKS * 2.5, axis=1).max() < 10.0


def test_no_face_no_detection(detector) -> None:
    assert detector.detect(background(320, 240, "coffee")) == []
    assert detector.detect(background(320, 240)) == []


def test_bad_names_and_settings_are_one_line_errors() -> None:
    with pytest.raises(InputError, match="unknown detector 'yolo'.*centerface"):
        create_detector("yolo")
    with pytest.raises(InputError, match="threshold must be in"):
        create_detector("centerface", threshold=1.5)
    with pytest.raises(WeightsError, match="retinaface"):
        create_detector("centerface", weights="some.pth")
    assert {"centerface", "retinaface-resnet50", "retinaface-mobilenet0.25"} <= set(DETECTORS)


def test_refinement_cuts_landmark_error_on_small_faces() -> None:
    clip = moving_face_clip(8, 240, 180, scale=0.4)  # eyes ~17 px apart, blurred, noisy, JPEG
    truth = np.stack([t[0] for t in clip.truth])
    errors = {}
    for refine in (False, True):
        found = [create_detector("centerface", refine=refine).detect(f) for f in clip.frames]
        assert all(len(faces) == 1 for faces in found)
        estimates = np.stack([faces[0].landmarks for faces in found])
        errors[refine] = (np.mean([crop_error(e, t) for e, t in zip(estimates, truth)]), error_parts(estimates, truth).varying)
    total, varying = errors[True]
    assert total < 0.85 * errors[False][0]
    assert varying < 0.5 * errors[False][1]  # the frame-to-frame part, which becomes flicker


@pytest.fixture(scope="module")
def occluded_run(detector):
    clip = moving_face_clip(36, 320, 240, occluded=(14, 15, 16))
    raw = []

    class Recording:
        def detect(self, rgb):
            raw.append(detector.detect(rgb))
            return raw[-1]

    # Every frame detected, so that raw[i] is frame i's reading.
    out = list(track_faces((Picture(f, i) for i, f in enumerate(clip.frames)), Recording(), FaceOptions(detect_every=1)))
    return clip, raw, out


def test_stage_recall_accuracy_and_smoothness_on_a_degraded_clip(occluded_run) -> None:
    clip, raw, out = occluded_run
    assert [frame.rgb is original for (frame, _), original in zip(out, clip.frames)] == [True] * 36
    assert all(len(faces) == 1 and faces[0].track_id == 0 for _, faces in out)  # recall 100 %
    detected = [faces[0].detected for _, faces in out]
    assert detected[13:18] == [True, False, False, False, True]  # occluded frames: predicted
    visible = [i for i, t in enumerate(clip.truth) if t]
    smoothed = np.stack([out[i][1][0].landmarks for i in visible])
    measured = np.stack([raw[i][0].landmarks for i in visible[:13]])
    truth = [clip.truth[i][0] for i in visible]
    # Shake of the error itself (the true motion of this short clip is fast): smoothing halves it.
    assert jitter(smoothed[:13] - truth[:13]) < 0.5 * jitter(measured - truth[:13])
    assert np.mean([crop_error(s, t) for s, t in zip(smoothed, truth)]) < 6.0  # 512×512 crop pixels


def test_stage_ends_tracks_at_a_shot_cut(detector) -> None:
    clip = shot_cut_clip(n_frames=16, cut=8)
    out = list(track_faces((Picture(f, i) for i, f in enumerate(clip.frames)), detector, FaceOptions(lag=4)))
    tracked = [faces for _, faces in out]
    paths = match_tracks(clip.truth, tracked)
    before, after = {p for p in paths[0] if p is not None}, {p for p in paths[1] if p is not None}
    assert len(before) == 1 and len(after) == 1 and before != after
    assert all(len(faces) == 1 for faces in tracked) and id_switches(paths[0]) == 0


def test_refinement_in_one_batch_reads_what_one_call_per_crop_reads(detector) -> None:
    """The refinement crops of all faces in a frame go to CenterFace as one batch; the readings
    equal those of one call per crop."""
    from face_clips import Pose, render

    class OneAtATime:  # the refiner without its batch method
        def __init__(self, backend) -> None:
            self.backend = backend

        def detect(self, rgb: np.ndarray):
            return self.backend.detect(rgb)

    frame, _ = render(background(480, 240), [Pose(130, 120, 0.5, 8.0), Pose(350, 110, 0.6, -5.0)])
    batched = detector.detect(frame)
    single = RefinedDetector(detector.detector, OneAtATime(detector.refiner)).detect(frame)
    assert len(batched) == len(single) == 2
    for a, b in zip(batched, single):
        np.testing.assert_allclose(a.landmarks, b.landmarks, atol=1e-3)
        np.testing.assert_array_equal(a.box, b.box)


@pytest.mark.parametrize("size", [(448, 256), (470, 230)], ids=["multiple of 32", "padded"])
def test_a_batch_decodes_each_image_as_a_call_of_its_own(detector, size) -> None:
    """CenterFace decodes a batch's outputs together; each image's faces (one, none, two) are
    those that a call with that image alone finds."""
    from face_clips import Pose, render

    width, height = size
    one, _ = render(background(width, height), [Pose(200, 120, 0.55, 4.0)])
    two, _ = render(background(width, height), [Pose(120, 120, 0.5, 8.0), Pose(330, 110, 0.6, -5.0)])
    images = [one, background(width, height), two]
    batched = detector.refiner.detect_batch(images)
    alone = [detector.refiner.detect(image) for image in images]
    assert [len(faces) for faces in batched] == [len(faces) for faces in alone] == [1, 0, 2]
    for faces_batched, faces_alone in zip(batched, alone):
        for a, b in zip(faces_batched, faces_alone):
            np.testing.assert_allclose(a.box, b.box, atol=1e-3)
            np.testing.assert_allclose(a.landmarks, b.landmarks, atol=1e-3)
            assert a.score == pytest.approx(b.score, abs=1e-5)


@pytest.mark.parametrize("crops", sorted(REFINE_POSITIONS))
def test_refinement_positions_are_centred_and_cover_the_stride_phases(crops: int) -> None:
    """Each set of crop offsets is a Latin square (every x and every y once), centred, whose x and y
    offsets fall on the whole of CenterFace's stride-4 grid: no phase gap over 1 px."""
    offsets = np.array(REFINE_POSITIONS[crops])
    assert offsets.shape == (crops, 2)
    np.testing.assert_allclose(offsets.mean(axis=0), 0.0, atol=1e-9)
    for axis in (0, 1):
        assert len(set(offsets[:, axis])) == crops
        phases = np.sort(offsets[:, axis] % 4)
        assert np.diff(np.append(phases, phases[0] + 4)).max() <= 1.0


def test_each_face_is_read_in_as_many_crops_as_asked_and_they_agree(detector) -> None:
    """RefinedDetector(crops=N) sends N crops per face to the refiner, in one batch; the landmarks
    averaged over 4 or 6 crops are within half a pixel of those over 8 (photo pixels)."""
    from face_clips import Pose, render

    class Batches:
        def __init__(self) -> None:
            self.sizes: list[int] = []

        def detect(self, rgb: np.ndarray):
            return detector.refiner.detect(rgb)

        def detect_batch(self, images):
            self.sizes.append(len(images))
            return detector.refiner.detect_batch(images)

    frame, _ = render(background(640, 360), [Pose(300, 170, 0.5, 6.0)])
    readings = {}
    for crops in REFINE_POSITIONS:
        refiner = Batches()
        (face,) = RefinedDetector(detector.detector, refiner, crops).detect(frame)
        assert refiner.sizes == [crops]
        readings[crops] = face.landmarks
    for crops in REFINE_POSITIONS:
        assert np.linalg.norm(readings[crops] - readings[8], axis=1).max() < 0.5, crops


def test_fast_faces_between_detector_runs_get_the_refinement_pass_alone(detector) -> None:
    """With detect-every 2, the frames between full runs in which the face moves fast are read
    by the refinement pass alone, around the tracker's prediction: no full-frame pass there,
    and landmarks as accurate as with the detector on every frame."""
    clip = moving_face_clip(20, 640, 360, scale=1.0, degraded=True)  # fast: its whole path in 20 frames
    truth = [t[0] for t in clip.truth]

    def crop_errors(config: FaceOptions, reader) -> float:
        out = list(track_faces((Picture(f, i) for i, f in enumerate(clip.frames)), reader, config))
        assert all(len(faces) == 1 for _, faces in out)
        return float(np.mean([crop_error(faces[0].landmarks, t) for (_, faces), t in zip(out, truth)]))

    every_frame = crop_errors(FaceOptions(detect_every=1), detector)
    counting = CountingPasses(detector)
    between = crop_errors(FaceOptions(detect_every=2), counting)
    assert counting.refined >= 5 and counting.detected + counting.refined == 20
    assert between <= every_frame + 0.3, f"{between:.2f} px against {every_frame:.2f} px detecting every frame"
