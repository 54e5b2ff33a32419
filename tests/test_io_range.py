"""Preview ranges (--start/--duration): exact to the frame, audio trimmed to match."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from media import AudioTrack, Subtitles, read_video, write_video
from vidface.io.decode import decode_frames
from vidface.io.index import frame_range
from vidface.io.probe import probe


@pytest.mark.parametrize(("suffix", "options"), [
    (".mp4", dict(audio="aac", bframes=3)),
    (".mkv", dict(audio=[AudioTrack("aac"), AudioTrack("libopus", language="fra")], vfr=True, subtitles=Subtitles(cues=3))),
    (".avi", dict(bframes=3)),
])
def test_range_is_frame_exact_and_trims_streams(suffix: str, options: dict, tmp_path: Path, cli) -> None:
    source = write_video(tmp_path / f"in{suffix}", frames=48, **options)
    output = tmp_path / f"out{suffix}"
    code, _, err = cli("restore", "--model", "none", source, output, "--start", "0.5", "--duration", "1")
    assert code == 0, err
    before, after = read_video(source), read_video(output)
    start, stop = Fraction(1, 2), Fraction(3, 2)
    shown = sorted(before.frame_pts)  # AVI gives them in decode order
    expected = [t - start for t in shown if start <= t - shown[0] < stop]
    assert expected and after.frame_pts == expected
    for index, packets in before.packets.items():
        kept = [(data, pts - start) for data, pts, _ in packets if start <= pts < stop]
        assert [(data, pts) for data, pts, _ in after.packets.get(index, [])] == kept, index


def test_range_from_zero_keeps_audio_priming(tmp_path: Path, cli) -> None:
    source = write_video(tmp_path / "in.mp4", frames=48, audio="aac")
    output = tmp_path / "out.mp4"
    assert cli("restore", "--model", "none", source, output, "--duration", "0.5")[0] == 0
    before, after = read_video(source), read_video(output)
    assert after.frame_pts == before.frame_pts[:12]
    audio_before, audio_after = before.packets[1], after.packets[1]
    assert audio_before[0][1] < 0  # AAC's priming packet starts before zero...
    assert audio_after[0][:2] == audio_before[0][:2]  # ...and is kept
    assert [p[:2] for p in audio_after] == [p[:2] for p in audio_before if p[1] < Fraction(1, 2)]


def test_frame_index_agrees_with_decoding(tmp_path: Path) -> None:
    """The probe's index <-> time map (packet timestamps) matches PyAV's stream decode."""
    source = write_video(tmp_path / "vfr.mkv", frames=30, vfr=True, bframes=2)
    info = probe(source)
    decoded = list(decode_frames(source))
    assert info.video.frame_count == len(decoded) == 30
    assert [int(pts) for pts in info.video.pts] == [f.pts for f in decoded]
    first, stop = frame_range(info, start=decoded[10].time - decoded[0].time, duration=0.2)
    assert first == 10
    assert all(decoded[i].time - decoded[10].time < 0.2 for i in range(first, stop))
    assert stop == 30 or decoded[stop].time - decoded[10].time >= 0.2 - 1e-3


def test_decode_range_is_exact(tmp_path: Path) -> None:
    source = write_video(tmp_path / "b.mp4", frames=40, bframes=3, codec_options={"g": "10"})
    everything = list(decode_frames(source))
    assert [f.index for f in everything] == list(range(40))
    part = list(decode_frames(source, start_pts=everything[17].pts, stop_pts=everything[31].pts))
    assert [f.pts for f in part] == [f.pts for f in everything[17:31]]
    assert [f.index for f in part] == list(range(14))
    np.testing.assert_array_equal(part[0].to_rgb(), everything[17].to_rgb())
