"""`restore --audio FILE`: a separate sound file (a film scan's WAV, a tape's sound captured
apart) copied into OUT after IN's own streams, packet for packet, its start at IN's first frame."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import av

from media import AudioTrack, moving_pattern, read_video, write_audio_only, write_image_sequence, write_video
from tiny_model import tiny_osdface  # noqa: F401 (fixture)

SOUND = AudioTrack(codec="pcm_s24le", rate=48000, channels=2)


def _packets(path: Path, stream_type: str = "audio") -> list[tuple[bytes, Fraction]]:
    """Each packet of `path`'s streams of `stream_type`, in file order: (bytes, time in seconds)."""
    with av.open(str(path)) as container:
        return [(bytes(packet), packet.pts * packet.time_base)
                for packet in container.demux(*(s for s in container.streams if s.type == stream_type)) if packet.size]


def _holds_sound(output: Path, sound: Path, start: Fraction = Fraction(0), moved: Fraction = Fraction(0)) -> bool:
    """Whether `output`'s audio is `sound`'s packets from `start` seconds on, byte for byte, at
    their times moved by `moved` seconds (to the millisecond Matroska keeps times in)."""
    expected = [(data, time + moved) for data, time in _packets(sound) if time >= start]
    written = _packets(output)
    return bool(expected) and [data for data, _ in written] == [data for data, _ in expected] and all(
        abs(time - wanted) <= Fraction(1, 1000) for (_, time), (_, wanted) in zip(written, expected))


def _scan(folder: Path, frames: int = 12) -> Path:
    folder.mkdir()
    write_image_sequence(folder, "scan.%04d.dpx", [moving_pattern(32, 24)(i) for i in range(frames)], codec="dpx",
                         pix_fmt="gbrp10le", first=1001)
    return folder / "scan.####.dpx"


def test_a_scans_sound_is_laid_beside_its_pictures(tmp_path: Path, cli, tiny_osdface) -> None:  # noqa: F811
    """A DPX scan's WAV goes into OUT packet for packet from its first frame on; with --start,
    from the range's first frame on, moved with it; --dry-run lists it and the sidecar names it."""
    source, sound = _scan(tmp_path / "reel"), write_audio_only(tmp_path / "reel.wav", SOUND, seconds=0.5)
    code, out, err = cli("restore", "--model", "none", source, tmp_path / "out.mkv", "--audio", sound, "--dry-run")
    assert code == 0 and "copy    #0 audio pcm_s24le of --audio 'reel.wav'" in out, err
    code, _, err = cli("restore", "--model", "none", source, tmp_path / "out.mkv", "--audio", sound, "--no-progress")
    assert code == 0, err
    assert read_video(tmp_path / "out.mkv").stream_codecs == ["ffv1", "pcm_s24le"]
    assert _holds_sound(tmp_path / "out.mkv", sound)
    code, _, err = cli("restore", "--model", "none", source, tmp_path / "later.mkv", "--audio", sound, "--start", "0.25",
                       "--no-progress")
    assert code == 0, err
    assert _holds_sound(tmp_path / "later.mkv", sound, start=Fraction(1, 4), moved=-Fraction(1, 4))
    model = ["--weights", tiny_osdface.release, "--base", tiny_osdface.base, "--device", "cpu", "--no-progress"]
    code, _, err = cli("restore", source, tmp_path / "restored.mkv", "--audio", sound, *model)
    assert code == 0 and _holds_sound(tmp_path / "restored.mkv", sound), err
    sidecar = json.loads((tmp_path / "restored.mkv.vidface.json").read_text())
    assert sidecar["sound"] == {"name": "reel.wav", "size": sound.stat().st_size}


def test_a_sound_file_joins_a_videos_own_sound_at_its_first_frame(tmp_path: Path, cli) -> None:
    """Beside a video's own audio, after it (--no-audio drops IN's alone); the file's start is IN's
    first frame, where IN's timeline starts later than 0 (an MPEG-TS file's, which OUT keeps)."""
    source = write_video(tmp_path / "tape.ts", frames=12, size=(32, 24), audio="aac")
    sound = write_audio_only(tmp_path / "commentary.wav", SOUND, seconds=0.5)
    code, _, err = cli("restore", "--model", "none", source, tmp_path / "out.mkv", "--audio", sound, "--no-progress")
    assert code == 0, err
    assert read_video(tmp_path / "out.mkv").stream_codecs == ["h264", "aac", "pcm_s24le"]
    video_start = read_video(tmp_path / "out.mkv").frame_pts[0]
    assert video_start > 0
    code, _, err = cli("restore", "--model", "none", source, tmp_path / "own.mkv", "--audio", sound, "--no-audio",
                       "--no-progress")
    assert code == 0 and read_video(tmp_path / "own.mkv").stream_codecs == ["h264", "pcm_s24le"], err
    assert _holds_sound(tmp_path / "own.mkv", sound, moved=video_start)


def test_a_broadcast_wav_is_placed_by_its_time_of_day(tmp_path: Path, cli) -> None:
    """A Broadcast WAV's time reference against IN's timecode places it: a quarter second after
    IN's first frame, or from a quarter second before, its sound before the picture left out
    (whole packets); --start cuts it as it cuts IN's; --dry-run says how it was placed."""
    source = write_video(tmp_path / "take.mkv", frames=24, size=(32, 24), fps=24, metadata={"timecode": "10:00:00:00"})
    ten = 10 * 3600 * SOUND.rate
    late = write_audio_only(tmp_path / "late.wav", SOUND, seconds=0.5, time_reference=ten + SOUND.rate // 4)
    early = write_audio_only(tmp_path / "early.wav", SOUND, seconds=0.5, time_reference=ten - SOUND.rate // 4)
    code, out, err = cli("restore", "--model", "none", source, tmp_path / "out.mkv", "--audio", late, "--dry-run")
    assert code == 0 and "of --audio 'late.wav', placed by its time reference +0.250 s from IN's timecode " \
                         "10:00:00:00" in out, err
    quarter = Fraction(1, 4)
    for sound, name, flags, start, moved in ((late, "late.mkv", [], Fraction(0), quarter),
                                             (early, "early.mkv", [], quarter, -quarter),
                                             (late, "later.mkv", ["--start", "0.5"], quarter, -quarter)):
        code, _, err = cli("restore", "--model", "none", source, tmp_path / name, "--audio", sound, "--no-progress",
                           *flags)
        assert code == 0 and _holds_sound(tmp_path / name, sound, start=start, moved=moved), (name, err)


def test_a_sound_file_that_cannot_go_in_is_a_one_line_error(tmp_path: Path, cli) -> None:
    """A missing file, a file with no sound, OUT itself, a container that cannot hold the sound
    (WebM's PCM) or its packets (MP4's 16-bit PCM, which stopped the run at its mux), and folder
    mode: one line each, and nothing written."""
    source, sound = _scan(tmp_path / "reel", frames=4), write_audio_only(tmp_path / "reel.wav", SOUND)
    silent = write_video(tmp_path / "silent.mkv", frames=2, size=(32, 24))
    folder = tmp_path / "videos"
    folder.mkdir()
    write_video(folder / "a.mkv", frames=2, size=(32, 24))
    cases = [
        ((source, tmp_path / "out.mkv", "--audio", tmp_path / "none.wav"), "--audio '", "does not exist"),
        ((source, tmp_path / "out.mkv", "--audio", silent), "silent.mkv' has no audio stream (streams: video h264)", ""),
        ((source, sound, "--audio", sound, "-y"), "is --audio's file; choose another output name", ""),
        ((source, tmp_path / "out.webm", "--audio", sound), "webm files cannot hold stream #0 of --audio 'reel.wav' "
                                                            "(audio pcm_s24le); write a .mkv instead", ""),
        ((folder, tmp_path / "restored", "--audio", sound), "--audio lays one sound file beside one IN", ""),
        ((source, tmp_path / "out.mp4", "--audio", write_audio_only(tmp_path / "16bit.wav", AudioTrack("pcm_s16le"))),
         "mp4 files cannot take the packets of stream #0 (audio pcm_s16le) of --audio '16bit.wav'", "write a .mkv"),
    ]
    before = sound.read_bytes()
    for args, message, more in cases:
        code, _, err = cli("restore", "--model", "none", "--no-progress", *args)
        assert code == 1 and err.startswith("vidface: error: ") and len(err.splitlines()) == 1, err
        assert message in err and more in err, err
    assert sound.read_bytes() == before
    assert not any((tmp_path / name).exists() for name in ("out.mkv", "out.webm", "out.mp4", "restored"))
