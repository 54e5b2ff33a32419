"""HDR faces shown to the restorer as SDR (vidface.faces.hdr): BT.2100's curves at the values
BT.2100 and BT.2408 publish, BT.2087's primaries, and a way back that inverts the way there."""

from __future__ import annotations

import av
import numpy as np
import pytest
import torch

from vidface.faces import hdr
from vidface.faces.hdr import FaceColour, face_colour


def test_pq_and_hlg_meet_the_published_values() -> None:
    light = torch.tensor([0.0, 0.01, 0.0203, 1.0], dtype=torch.float64)  # 0, 100, 203, 10000 cd/m²
    # BT.2408 table 1: 100 cd/m² is 50.8 % of PQ's signal, reference white (203 cd/m²) 58 %.
    np.testing.assert_allclose(hdr.light_to_pq(light).numpy(), [7.3e-7, 0.5081, 0.5807, 1.0], atol=5e-4)
    np.testing.assert_allclose(hdr.pq_to_light(hdr.light_to_pq(light)).numpy(), light.numpy(), rtol=1e-9, atol=1e-12)
    signal = torch.tensor([0.0, 0.5, 0.75, 1.0], dtype=torch.float64)
    # BT.2100: HLG's signal 0.5 is scene light 1/12; BT.2408: reference white is 75 % of its signal.
    scene = hdr.hlg_to_scene(signal)
    np.testing.assert_allclose(scene.numpy(), [0.0, 1 / 12, 0.2650, 1.0], atol=5e-4)
    np.testing.assert_allclose(hdr.scene_to_hlg(scene).numpy(), signal.numpy(), atol=1e-9)


def test_reference_white_of_either_format_is_one_sdr_level() -> None:
    """PQ's 203 cd/m² and HLG's 75 % are both reference white: the model sees the same grey,
    and 18 % of it (a mid-grey card) where SDR shows 18 % through its gamma."""
    pq_white = float(hdr.light_to_pq(torch.tensor(0.0203, dtype=torch.float64)))
    pq_grey = float(hdr.light_to_pq(torch.tensor(0.0203 * 0.18, dtype=torch.float64)))
    hlg_grey = float(hdr.scene_to_hlg(torch.tensor(0.18 ** (1 / 1.2), dtype=torch.float64)
                                      * hdr.hlg_to_scene(torch.tensor(0.75, dtype=torch.float64))))
    pq, hlg = FaceColour("pq", bt2020=True), FaceColour("hlg", bt2020=True)
    white = [float(c.to_model(torch.full((3, 1, 1), v)).mean()) for c, v in ((pq, pq_white), (hlg, 0.75))]
    assert white[0] == pytest.approx(white[1], abs=1e-4)
    assert 0.9 < white[0] < 1.0  # above the knee: compressed, never clipped
    for colour, grey in ((pq, pq_grey), (hlg, hlg_grey)):
        assert float(colour.to_model(torch.full((3, 1, 1), grey)).mean()) == pytest.approx(0.18 ** (1 / 2.4), abs=2e-4)


def test_bt2020_primaries_are_bt2087s() -> None:
    """BT.2087's published BT.709-to-BT.2020 matrix is the inverse of the one the model's way uses."""
    published = [[0.6274, 0.3293, 0.0433], [0.0691, 0.9195, 0.0114], [0.0164, 0.0880, 0.8956]]
    np.testing.assert_allclose(hdr._BT709_TO_BT2020, published, atol=2e-4)


@pytest.mark.parametrize("transfer", ["pq", "hlg", "sdr"])
@pytest.mark.parametrize("bt2020", [True, False])
def test_from_model_inverts_to_model(transfer: str, bt2020: bool) -> None:
    """Any face the model gives back maps to one coded face and back (to the brightest light the
    format holds); a coded face within BT.709's colours maps to SDR and back exactly."""
    colour = FaceColour(transfer, bt2020=bt2020)
    sdr = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 0.99
    coded = colour.from_model(sdr)
    assert coded.dtype == torch.float32 and 0 <= float(coded.min()) and float(coded.max()) <= 1
    assert (colour.to_model(coded) - sdr).abs().max() < 3e-3  # a hundredth of a level but where HLG's peak cuts
    assert (colour.from_model(colour.to_model(coded)) - coded).abs().max() * 1023 < 0.01
    brightest = colour.from_model(torch.ones(1, 3, 1, 1))
    assert float(brightest.min()) == pytest.approx(1.0, abs=1e-4)  # a tenth of a 10-bit step


def test_sdr_faces_pass_unchanged() -> None:
    images = torch.rand(1, 3, 8, 8)
    assert FaceColour().to_model(images) is images and FaceColour().from_model(images) is images


def test_a_uhd_sdr_face_changes_primaries_alone() -> None:
    """BT.2020 SDR: greys pass as they are; BT.709's red, coded in BT.2020 (BT.2087's first
    column), reaches the model as BT.709's red."""
    colour = FaceColour("sdr", bt2020=True)
    greys = torch.linspace(0, 1, 11).view(1, 1, 11).expand(3, 1, 11)
    assert (colour.to_model(greys) - greys).abs().max() < 1e-6
    red = torch.tensor([0.6274, 0.0691, 0.0164], dtype=torch.float64).pow(1 / 2.4).view(3, 1, 1)
    light = colour.to_model(red).pow(2.4)  # compared in light: the gamma magnifies the 4-decimal rounding near 0
    np.testing.assert_allclose(light.flatten().numpy(), [1.0, 0.0, 0.0], atol=2e-4)


@pytest.mark.parametrize(("trc", "primaries", "expected"), [
    (16, 9, FaceColour("pq", bt2020=True)),
    (18, 9, FaceColour("hlg", bt2020=True)),
    (18, 1, FaceColour("hlg", bt2020=False)),
    (1, 9, FaceColour("sdr", bt2020=True)),  # UHD SDR: coded as SDR, in BT.2020's primaries
    (2, 2, FaceColour()),  # untagged
])
def test_a_pictures_tags_say_how_its_faces_are_coded(trc: int, primaries: int, expected: FaceColour) -> None:
    video = av.VideoFrame(16, 16, "yuv420p10le")
    video.color_trc, video.color_primaries = trc, primaries
    assert face_colour(video) == expected


@pytest.mark.parametrize("transfer", ["pq", "hlg"])
def test_the_detector_sees_an_hdr_picture_as_sdr_shows_it(transfer: str) -> None:
    """Through `sdr_rgb` an HDR picture's greys are the SDR picture's within a level or
    two (its 8-bit coded levels are coarser there), and the face detector finds the same face,
    landmarks within a pixel; an SDR picture reaches it as it is."""
    from fractions import Fraction

    from skimage import data

    from vidface.faces.detect import create_detector
    from restore_clips import tag_hdr
    from vidface.faces.hdr import sdr_rgb
    from vidface.io.frames import Frame
    from vidface.io.pixels import reformatted

    photo = np.ascontiguousarray(data.astronaut()[:, 64:448])  # 512x384, the face in the top half
    colour = FaceColour(transfer, bt2020=False)
    coded = colour.from_model(torch.from_numpy(photo / 255.0).permute(2, 0, 1)).permute(1, 2, 0).numpy()
    video = reformatted(av.VideoFrame.from_ndarray(np.rint(coded * 65535).astype(np.uint16), format="rgb48le"),
                        format="gbrp16le")
    tag_hdr(video, transfer)
    frame = Frame(index=0, pts=0, time_base=Fraction(1, 24), duration=1, video=video)
    seen = sdr_rgb(frame).astype(int)
    assert np.abs(frame.to_rgb().astype(int) - photo).mean() > 8  # coded, the picture is another
    assert np.abs(seen - photo).mean() < 1.5 and np.percentile(np.abs(seen - photo), 99) <= 4
    sdr = Frame(index=0, pts=0, time_base=Fraction(1, 24), duration=1,
                video=av.VideoFrame.from_ndarray(photo, format="rgb24"))
    assert (sdr_rgb(sdr) == photo).all()
    detector = create_detector("centerface")
    (expected,), (found,) = detector.detect(photo), detector.detect(sdr_rgb(frame))
    assert np.abs(found.landmarks - expected.landmarks).max() < 1.0
