"""Settings: presets shipped with the package, --config files, flag overrides, clear errors."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from vidface.config import (PRESETS, Settings, apply_mapping, load_settings, preset_path, read_preset, read_yaml,
                            settings_to_dict)
from vidface.errors import InputError
from vidface.models.temporal import TemporalOptions

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Encode:
    codec: str = "libx264"
    crf: int | None = 18
    quality: float = 0.5
    lossless: bool = False
    pix_fmt: Literal["yuv420p", "yuv420p10le"] = "yuv420p"
    options: dict[str, str] = field(default_factory=dict)
    size: tuple[int, int] = (512, 512)
    scales: tuple[float, ...] = (1.0,)
    folder: Path | None = None
    extra: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.crf is not None and not 0 <= self.crf <= 51:
            raise InputError(f"crf must be in [0, 51], got {self.crf}")


@dataclass(frozen=True)
class Run:
    encode: Encode = field(default_factory=Encode)
    temporal: TemporalOptions = field(default_factory=TemporalOptions)


def write(tmp_path: Path, text: str, name: str = "user.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_apply_mapping_converts_and_keeps_unset_values() -> None:
    run = apply_mapping(
        Run(),
        {
            "encode": {
                "crf": 12,
                "quality": 1,  # an integer where a float is expected widens
                "pix_fmt": "yuv420p10le",
                "options": {"tune": "grain"},
                "size": [640, 480],
                "scales": [1, 0.5],
                "folder": "out/dir",
                "extra": {"tune": "grain", "g": "250"},
            },
            "temporal": {"strength": 0.3},
        },
        "test",
    )
    assert run.encode == Encode(crf=12, quality=1.0, pix_fmt="yuv420p10le", options={"tune": "grain"},
                                size=(640, 480), scales=(1.0, 0.5), folder=Path("out/dir"),
                                extra=(("tune", "grain"), ("g", "250")))
    assert isinstance(run.encode.quality, float)
    assert run.temporal == TemporalOptions(strength=0.3)
    assert apply_mapping(Run(), {"encode": {"crf": None}}, "test").encode.crf is None
    # YAML 1.1 reads 1e-3 as text; it is still a number where a number is expected
    assert apply_mapping(Run(), {"encode": {"quality": "1e-3"}}, "test").encode.quality == 0.001


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({"encode": {"crff": 3}}, r"unknown setting 'encode\.crff' in test; valid keys of 'encode': codec, crf, extra, folder, "),
        ({"encoder": {}}, r"unknown setting 'encoder' in test; valid keys \(sections\): encode, temporal$"),
        ({"encode": {"crf": "high"}}, r"setting 'encode\.crf' in test must be an integer or null, got 'high' \(str\)"),
        ({"encode": {"crf": 12.5}}, r"'encode\.crf' .* must be an integer or null, got 12\.5 \(float\)"),
        ({"encode": {"lossless": "yes please"}}, r"'encode\.lossless' .* must be true or false, got 'yes please'"),
        ({"encode": {"quality": True}}, r"'encode\.quality' .* must be a number, got True \(bool\)"),
        ({"encode": {"pix_fmt": "rgb24"}}, r"'encode\.pix_fmt' .* must be one of 'yuv420p', 'yuv420p10le', got 'rgb24'"),
        ({"encode": {"size": [1, 2, 3]}}, r"'encode\.size' .* must be a list of 2 items, got \[1, 2, 3\]"),
        ({"encode": {"scales": 1.0}}, r"'encode\.scales' .* must be a list, each a number, got 1\.0"),
        ({"encode": {"extra": {"g": 250}}}, r"'encode\.extra' .* must be a mapping \(or a list of \[key, value\] pairs\)"),
        ({"encode": {"options": ["a"]}}, r"'encode\.options' .* must be a mapping"),
        ({"encode": 5}, r"section 'encode' in test must be a mapping of keys, got 5 \(int\)"),
        ({"encode": {"crf": 80}}, r"crf must be in \[0, 51\], got 80 \(in test\)"),
        ({"temporal": {"strength": 2}}, r"temporal\.strength must be in \[0, 1\].*got 2\.0 \(in test\)"),
    ],
)
def test_bad_settings_are_one_line_errors_naming_key_value_and_fix(mapping: dict, message: str) -> None:
    with pytest.raises(InputError, match=message) as caught:
        apply_mapping(Run(), mapping, "test")
    assert "\n" not in str(caught.value)


def test_every_preset_loads_and_default_is_the_built_in_defaults() -> None:
    for name in PRESETS:
        assert preset_path(name).is_file()
        assert isinstance(load_settings(name), Settings)
    assert load_settings("default") == Settings()
    # the presets really differ where they claim to
    default, archival, fast = (load_settings(name) for name in PRESETS)
    assert archival.temporal.strength > default.temporal.strength
    assert archival.encode.crf < default.encode.crf < fast.encode.crf
    assert archival.faces.detect_every == 1 < fast.faces.detect_every
    assert archival.faces.lag > default.faces.lag > fast.faces.lag
    assert archival.faces.detect_size > default.faces.detect_size
    assert archival.model.dtype == "fp32" and default.model.dtype == fast.model.dtype == "auto"
    with pytest.raises(InputError, match="unknown preset 'best'; choose one of: default, archival, fast"):
        load_settings("best")


def test_a_preset_is_read_as_its_file_says_and_a_change_to_one_reading_stays_there() -> None:
    for name in PRESETS:
        assert read_preset(name) == read_yaml(preset_path(name))
    changed = read_preset("fast")
    changed["faces"]["lag"] = 99
    assert read_preset("fast")["faces"]["lag"] == read_yaml(preset_path("fast"))["faces"]["lag"] != 99
    assert load_settings("fast").faces.lag != 99


def test_layers_file_over_preset_and_flags_over_file(tmp_path: Path) -> None:
    user = write(tmp_path, "temporal:\n  strength: 0.25\n  max_gap: 9\n")
    settings = load_settings("archival", user, overrides={"temporal.max_gap": 3, "temporal.strength": None})
    archival = load_settings("archival")
    assert settings.temporal.strength == 0.25  # file over preset
    assert settings.temporal.max_gap == 3  # flag over file
    assert settings.temporal.prompt_momentum == archival.temporal.prompt_momentum  # preset kept
    with pytest.raises(InputError, match="unknown setting 'temporal.strenght' in the command line"):
        load_settings(overrides={"temporal.strenght": 0.1})


def test_config_file_problems_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(InputError, match=r"config file '.*nope\.yaml' does not exist"):
        load_settings(missing)
    broken = write(tmp_path, "temporal:\n  strength: [0.5\n", "broken.yaml")
    with pytest.raises(InputError, match=r"broken\.yaml' is not valid YAML at line \d+, column \d+"):
        load_settings(broken)
    listing = write(tmp_path, "- 1\n- 2\n", "list.yaml")
    with pytest.raises(InputError, match=r"must hold a mapping of sections .* got a list"):
        load_settings(listing)
    typo = write(tmp_path, "temporal:\n  strenght: 0.5\n", "typo.yaml")
    with pytest.raises(InputError, match=r"unknown setting 'temporal\.strenght' in config file '.*typo\.yaml'; "
                                         r"valid keys of 'temporal': change_scale, mask_momentum, max_gap, "):
        load_settings(typo)
    assert read_yaml(write(tmp_path, "# only a comment\n", "empty.yaml")) == {}
    assert load_settings(tmp_path / "empty.yaml") == Settings()


def test_settings_round_trip_through_a_plain_dict(tmp_path: Path) -> None:
    run = apply_mapping(Run(), {"encode": {"folder": "x", "size": [8, 8]}}, "test")
    plain = settings_to_dict(run)
    assert plain["encode"]["folder"] == "x" and plain["encode"]["size"] == [8, 8]
    assert apply_mapping(Run(), plain, "test") == run
    settings = load_settings("archival")
    assert apply_mapping(Settings(), settings_to_dict(settings), "test") == settings


def test_presets_ship_in_the_wheel(tmp_path: Path) -> None:
    """A non-editable install gets the preset files (package data), not only this checkout."""
    pytest.importorskip("setuptools", reason="building a wheel offline needs setuptools installed")
    source = tmp_path / "source"  # a copy, so the build leaves nothing in the checkout
    shutil.copytree(REPO / "vidface", source / "vidface", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(source)],
        check=True, capture_output=True,
    )
    (wheel,) = tmp_path.glob("vidface-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in PRESETS:
        assert f"vidface/configs/{name}.yaml" in names


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("source_pix_fmt", ["yuv420p", "yuv420p10le"])
def test_preset_encode_settings_are_accepted_by_the_encoder(tmp_path: Path, preset: str, source_pix_fmt: str) -> None:
    """Each preset's encode section runs through the real transcode path; 10-bit stays 10-bit."""
    from media import read_video, write_video

    from vidface.pipeline import identity, plan_transcode, transcode

    source = write_video(tmp_path / "in.mp4", frames=4, size=(64, 48), pix_fmt=source_pix_fmt)
    plan = plan_transcode(source, tmp_path / "out.mp4", encode=load_settings(preset).encode)
    transcode(plan, identity)
    result = read_video(tmp_path / "out.mp4")
    assert len(result.frame_pts) == 4
    assert result.pix_fmt == source_pix_fmt


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_face_settings_build_a_working_detector(preset: str) -> None:
    """Each preset's faces section makes the real detector, and it finds the photo's face."""
    import skimage.data

    from vidface.faces.options import detector_for

    faces = detector_for(load_settings(preset).faces).detect(skimage.data.astronaut())
    assert len(faces) == 1 and faces[0].score > 0.5
