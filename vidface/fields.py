"""Settings fields that carry their own help, command-line flag and check, so a setting is
written once, as a field of its stage's options dataclass.

    lag: int = option(8, "future frames used to smooth face positions", flag="--lag",
                      metavar="FRAMES", rule=at_least(0))

`check` applies every field's rule (each dataclass calls it from ``__post_init__``, so values
from presets, files and flags meet the same rule); `vidface.commands.options.add_option_flags`
builds the flags, with the built-in default and the presets' values in their help, and reads
them back as settings overrides.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from vidface.errors import InputError

__all__ = ["Rule", "above", "at_least", "between", "check", "one_of", "option", "option_fields", "zero_or_at_least"]


@dataclass(frozen=True)
class Rule:
    """A condition on one value: `holds(value)`, and in words what is `wanted` ("at least 1")."""

    holds: Callable[[Any], bool]
    wanted: str
    values: tuple[Any, ...] | None = None  # the allowed values, for a rule that lists them


def at_least(low: float) -> Rule:
    return Rule(lambda value: value >= low, f"at least {low}")


def above(low: float) -> Rule:
    return Rule(lambda value: value > low, f"above {low}")


def between(low: float, high: float, *, upper_open: bool = False, note: str = "") -> Rule:
    """low <= value <= high (value < high when upper_open)."""
    closing = ")" if upper_open else "]"
    return Rule(lambda value: low <= value < high if upper_open else low <= value <= high,
                f"in [{low}, {high}{closing}" + (f" ({note})" if note else ""))


def one_of(values: Iterable[Any]) -> Rule:
    allowed = tuple(values)
    return Rule(lambda value: value in allowed, "one of " + ", ".join(map(str, allowed)), allowed)


def zero_or_at_least(low: int, note: str) -> Rule:
    return Rule(lambda value: value == 0 or value >= low, f"0 ({note}) or at least {low}")


def option(default: Any = dataclasses.MISSING, help: str = "", *, flag: str | None = None, metavar: str | None = None,
           rule: Rule | None = None, parse: Callable[[str], Any] | None = None,
           default_factory: Any = dataclasses.MISSING, changes_frames: bool = True) -> Any:
    """A dataclass field with its help text, its flag (None: settable in files only), the
    metavar and parser of the flag's value (default: from the field's type), and its rule.
    A bool field's flag sets True, or False when it starts with --no-. changes_frames: False
    for a setting that changes how a run goes but not the frames it restores beyond rounding
    (a resumed run may change it and keep its finished segments)."""
    metadata = {"help": help, "flag": flag, "metavar": metavar, "rule": rule, "parse": parse,
                "changes_frames": changes_frames}
    return dataclasses.field(default=default, default_factory=default_factory, metadata=metadata)


def option_fields(cls: type) -> list[dataclasses.Field]:
    """The fields of an options dataclass that `option` made."""
    return [f for f in dataclasses.fields(cls) if "help" in f.metadata]


def check(instance: Any) -> None:
    """InputError for the first field of `instance` whose value breaks its rule (None passes:
    it means "not set" or "automatic" wherever a field allows it)."""
    for field in option_fields(type(instance)):
        rule, value = field.metadata["rule"], getattr(instance, field.name)
        if rule is not None and value is not None and not rule.holds(value):
            raise InputError(f"{type(instance).section}.{field.name} must be {rule.wanted}, got {value!r}")
