"""Typed settings: one section per stage, from built-in defaults, a preset, a file and flags.

Each stage owns the dataclass of its options, named ``<Stage>Options``, beside the code it
configures (vidface.faces.options, vidface.models.options, vidface.models.temporal,
vidface.faces.paste, vidface.io.options); :class:`Settings` composes them, one field (section) per
stage. Every setting is written once, as a field with its help, flag and rule
(:mod:`vidface.fields`): the command-line flags, their help and the checks come from it. Settings are resolved in layers, later ones winning:

1. the dataclasses' built-in defaults (which are the ``default`` preset),
2. each ``--config`` value in the order given: a preset by name (``default``, ``archival``,
   ``fast``: YAML files shipped inside the package in ``vidface/configs/``, their one home,
   installed as package data) or a user's YAML file with any subset of the same sections and keys,
3. command-line flags, as dotted keys (``{"temporal.strength": 0.4}``; None means "not given").

Every layer is checked against the dataclasses: an unknown key is an error naming it and the
valid keys, a value of the wrong type an error naming the key, the value and the expected type,
and each dataclass's own ``__post_init__`` checks ranges. Errors are one-line ``InputError``s
that also name where the value came from.
"""

from __future__ import annotations

import copy
import dataclasses
import enum
import functools
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import yaml

from vidface.errors import InputError, VidfaceError
from vidface.faces.paste import PasteOptions
from vidface.faces.options import FaceOptions
from vidface.fields import option_fields
from vidface.io.options import EncodeOptions
from vidface.models.options import ModelOptions
from vidface.models.temporal import TemporalOptions

__all__ = [
    "PRESETS",
    "Settings",
    "apply_mapping",
    "frame_settings",
    "is_config_file",
    "load_settings",
    "preset_path",
    "read_preset",
    "read_yaml",
    "settings_to_dict",
]

PRESETS = ("default", "archival", "fast")

T = TypeVar("T")


@dataclass(frozen=True)
class Settings:
    """Everything a restore run can be configured with, one section per stage.

    faces: detection cadence, tracking and landmark smoothing (vidface.faces.options).
    model: weights, device, precision and batching of the restorer (vidface.models.options).
    temporal: temporal stabilisation of the restored faces (vidface.models.temporal).
    paste: the mask restored faces are blended in with (vidface.faces.paste).
    encode: how the video is re-encoded (vidface.io.encode).
    """

    faces: FaceOptions = field(default_factory=FaceOptions)
    model: ModelOptions = field(default_factory=ModelOptions)
    temporal: TemporalOptions = field(default_factory=TemporalOptions)
    paste: PasteOptions = field(default_factory=PasteOptions)
    encode: EncodeOptions = field(default_factory=EncodeOptions)


def preset_path(name: str) -> Path:
    """The YAML file of a preset shipped with the package."""
    if name not in PRESETS:
        raise InputError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}, or give a YAML file")
    return Path(str(resources.files("vidface").joinpath("configs", f"{name}.yaml")))


def read_preset(name: str) -> dict[str, Any]:
    """A preset's sections, a copy of the file's mapping parsed once per process: building the
    command line's help notes every flag where a preset differs, and PyYAML parsing the files
    again for each of them made the parser a noticeable part of every command's start-up."""
    return copy.deepcopy(_parsed_preset(name))


@functools.cache
def _parsed_preset(name: str) -> dict[str, Any]:
    return read_yaml(preset_path(name))


def load_settings(*configs: str | Path, overrides: Mapping[str, Any] | None = None) -> Settings:
    """Resolve the settings of a run: built-in defaults < the `default` preset < each of
    `configs` in order < flags.

    configs: preset names (:data:`PRESETS`) or YAML files, as given to ``--config``; a value
        that names an existing file, or ends in .yaml/.yml, or holds a path separator, is a file.
    overrides: dotted keys to values, e.g. ``{"temporal.strength": 0.4}``; entries whose value
        is None (a flag that was not given) are skipped.
    """
    settings = apply_mapping(Settings(), read_preset("default"), "preset 'default'")
    for config in configs:
        if is_config_file(config):
            settings = apply_mapping(settings, read_yaml(config), f"config file {str(config)!r}")
        else:
            settings = apply_mapping(settings, read_preset(str(config)), f"preset {config!r}")
    if overrides:
        nested: dict[str, Any] = {}
        for key, value in overrides.items():
            if value is None:
                continue
            *sections, name = key.split(".")
            target = nested
            for section in sections:
                target = target.setdefault(section, {})
            target[name] = value
        settings = apply_mapping(settings, nested, "the command line")
    return settings


def is_config_file(config: str | Path) -> bool:
    """Whether a ``--config`` value means a YAML file rather than a preset name."""
    path = Path(config)
    return path.is_file() or path.suffix in (".yaml", ".yml") or len(path.parts) > 1


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML file whose top level is a mapping (an empty file is an empty mapping)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"config file {str(path)!r} does not exist; check the path given to --config") from None
    except OSError as error:
        raise InputError(f"cannot read config file {str(path)!r}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise InputError(f"config file {str(path)!r} is not UTF-8 text; give a YAML file") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or "invalid syntax"
        raise InputError(f"config file {str(path)!r} is not valid YAML{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(
            f"config file {str(path)!r} must hold a mapping of sections (e.g. 'temporal:'), "
            f"got a {type(data).__name__}"
        )
    return data


def apply_mapping(instance: T, mapping: Mapping[str, Any], source: str, prefix: str = "") -> T:
    """A copy of the dataclass `instance` with the values of `mapping` applied (recursively).

    Nested dataclass fields take nested mappings; keys not given keep the instance's values.
    source: where the mapping came from, for error messages ("config file 'x.yaml'").
    prefix: dotted path of `instance` inside the settings, for error messages.
    """
    cls = type(instance)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    if not isinstance(mapping, Mapping):
        what = f"section {prefix.rstrip('.')!r}" if prefix else "the top level"
        raise InputError(f"{what} in {source} must be a mapping of keys, got {_show(mapping)}")
    changes: dict[str, Any] = {}
    for key, value in mapping.items():
        dotted = f"{prefix}{key}"
        if key not in fields:
            group = f"of {prefix.rstrip('.')!r}" if prefix else "(sections)"
            raise InputError(
                f"unknown setting {dotted!r} in {source}; valid keys {group}: {', '.join(sorted(fields))}"
            )
        current = getattr(instance, key)
        if dataclasses.is_dataclass(current) and not isinstance(current, type):
            changes[key] = apply_mapping(current, value, source, f"{dotted}.")
        else:
            changes[key] = _coerce(value, hints[key], dotted, source)
    try:
        return dataclasses.replace(instance, **changes)
    except VidfaceError as error:
        raise InputError(f"{error} (in {source})") from None
    except (ValueError, TypeError) as error:
        raise InputError(f"invalid setting in {source}: {error}") from None


def settings_to_dict(settings: Any) -> dict[str, Any]:
    """Plain nested dict of a settings dataclass (YAML- and JSON-friendly: paths as strings)."""

    def plain(value: Any) -> Any:
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, enum.Enum):
            return value.value
        if isinstance(value, tuple | list):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(dataclasses.asdict(settings))


def frame_settings(settings: Settings) -> dict[str, Any]:
    """`settings_to_dict` of the settings that change the restored frames: every section but
    encode (a plan keys OUT's encoding itself), less the options made with changes_frames=False."""
    values = settings_to_dict(settings)
    del values["encode"]
    for section, options in values.items():
        for setting in option_fields(type(getattr(settings, section))):
            if not setting.metadata["changes_frames"]:
                del options[setting.name]
    return values


class _Mismatch(Exception):
    """A value does not fit a type (internal; becomes an InputError naming the key)."""


def _coerce(value: Any, annotation: Any, key: str, source: str) -> Any:
    try:
        return _convert(value, annotation)
    except _Mismatch:
        raise InputError(
            f"setting {key!r} in {source} must be {_describe(annotation)}, got {_show(value)}"
        ) from None


def _convert(value: Any, annotation: Any) -> Any:
    """`value` as an instance of `annotation`, or _Mismatch. Ints widen to float; YAML lists
    become tuples or lists, and mappings become tuples of (key, value) pairs; strings become
    paths; numeric strings such as "1e-3" (which YAML 1.1 reads as text) become floats."""
    if annotation is Any:
        return value
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Union or origin is types.UnionType:
        if value is None and type(None) in args:
            return None
        for option in args:
            if option is type(None):
                continue
            try:
                return _convert(value, option)
            except _Mismatch:
                continue
        raise _Mismatch
    if origin is typing.Literal:
        for allowed in args:
            if value == allowed and type(value) is type(allowed):
                return allowed
        raise _Mismatch
    if origin in (tuple, list):
        if isinstance(value, Mapping) and _is_pairs(annotation):
            value = [[k, v] for k, v in value.items()]
        if not isinstance(value, list | tuple):
            raise _Mismatch
        if origin is list:
            item = args[0] if args else Any
            return [_convert(v, item) for v in value]
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0]) for v in value)
        if args and len(args) != len(value):
            raise _Mismatch
        return tuple(_convert(v, a) for v, a in zip(value, args)) if args else tuple(value)
    if origin is dict:
        if not isinstance(value, Mapping):
            raise _Mismatch
        key_type, value_type = args if args else (Any, Any)
        return {_convert(k, key_type): _convert(v, value_type) for k, v in value.items()}
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise _Mismatch
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _Mismatch
    if annotation is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                raise _Mismatch from None
        raise _Mismatch
    if annotation is Path:
        if isinstance(value, str | Path):
            return Path(value)
        raise _Mismatch
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        for member in annotation:
            if value == member.value or value == member.name or value is member:
                return member
        raise _Mismatch
    if isinstance(annotation, type):
        if isinstance(value, annotation) and not (isinstance(value, bool) and annotation is not bool):
            return value
        raise _Mismatch
    raise TypeError(f"settings type {annotation!r} is not supported")


def _is_pairs(annotation: Any) -> bool:
    """tuple[tuple[K, V], ...]: key-value options, which YAML may also give as a mapping."""
    args = typing.get_args(annotation)
    return (typing.get_origin(annotation) is tuple and len(args) == 2 and args[1] is Ellipsis
            and typing.get_origin(args[0]) is tuple and len(typing.get_args(args[0])) == 2)


def _describe(annotation: Any) -> str:
    """The expected type in words, for error messages."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Union or origin is types.UnionType:
        parts = [_describe(a) for a in args if a is not type(None)]
        text = " or ".join(parts)
        return f"{text} or null" if type(None) in args else text
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if _is_pairs(annotation):
        return "a mapping (or a list of [key, value] pairs)"
    if origin in (tuple, list):
        if args and (origin is list or args[-1] is Ellipsis):
            return f"a list, each {_describe(args[0])}"
        return f"a list of {len(args)} items" if args else "a list"
    if origin is dict:
        return "a mapping"
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return "one of " + ", ".join(repr(m.value) for m in annotation)
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string", Path: "a path"}
    if annotation in names:
        return names[annotation]
    return getattr(annotation, "__name__", str(annotation))


def _show(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"
