"""Child process of the determinism tests: transcodes and restores a set of clips and prints
each output file's sha256 as JSON, so that runs under different allocators can be compared.

    python same_bytes.py WORK RELEASE BASE

Cases (videos 200 px wide, so every picture has line padding): `--model none` through the
Python API and through the CLI, the tiny-model restore, and a restore interrupted by Ctrl-C and
resumed; each on a VFR MP4 with B-frames encoded by x264 and on Matroska encoded as FFV1. The
CLI case runs last: the CLI sets the allocator's thresholds for the rest of the process.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from types import SimpleNamespace

TESTS = Path(__file__).resolve().parent
FRAMES, WIDTH, HEIGHT = 30, 200, 152
CODECS = {"x264": (".mp4", "libx264", dict(vfr=True, bframes=3, audio="aac")),
          "ffv1": (".mkv", "ffv1", dict(audio="aac"))}


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main(work: Path, release: Path, base: Path) -> dict[str, str]:
    from face_clips import moving_face_clip
    from media import write_video
    from resume_tools import restore_interrupted_and_resumed
    from tiny_model import tiny_options
    from vidface.cli import main as cli
    from vidface.io.options import EncodeOptions
    from vidface.models.loading import load_osdface
    from vidface.pipeline import plan_transcode, transcode

    model = load_osdface(tiny_options(SimpleNamespace(release=release, base=base)))
    clip = moving_face_clip(FRAMES, WIDTH, HEIGHT)
    results: dict[str, str] = {}
    sources = {}
    for name, (suffix, codec, options) in CODECS.items():
        source = write_video(work / f"in-{name}{suffix}", frames=FRAMES, size=(WIDTH, HEIGHT),
                             images=lambda i: clip.frames[i], **options)
        sources[name] = source
        encode = EncodeOptions(codec=codec)
        none = work / f"none-{name}{suffix}"
        transcode(plan_transcode(source, none, encode=encode), lambda frames: frames)
        results[f"none {name}"] = digest(none)
        resumed = work / f"resumed-{name}{suffix}"
        reference = restore_interrupted_and_resumed(source, resumed, model, encode=encode)
        results[f"restore {name}"] = digest(reference)
        results[f"resumed {name}"] = digest(resumed)
    for name, (suffix, codec, _) in CODECS.items():
        out = work / f"cli-none-{name}{suffix}"
        code = cli(["restore", "--model", "none", "--codec", codec, "--no-progress", "-q", str(sources[name]), str(out)])
        assert code == 0, code
        results[f"cli none {name}"] = digest(out)
    return results


if __name__ == "__main__":
    sys.path.insert(0, str(TESTS))
    print(json.dumps(main(*map(Path, sys.argv[1:4]))))
