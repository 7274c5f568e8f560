"""Typed config values: closed choices, durations and the checks dataclasses share.

Every check raises :class:`~raylake.errors.ConfigValueError` (a ConfigError and a
ValueError) whose message names the full key, the bad value and a valid example,
so a dataclass built by OmegaConf, by a test or by another job reports the same.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from enum import Enum
from typing import Any, TypeVar

import yaml

from raylake.errors import ConfigValueError, did_you_mean

# OmegaConf's marker of a required value not set yet: dataclass defaults hold it
# until Hydra composes the YAML, so checks leave it alone.
MISSING_VALUE = "???"


class Choice(str, Enum):
    """A closed choice of a config key: a str Enum whose members are named as their values.

    It prints, formats and reprs as its plain value, so messages and f-strings of
    the code that reads it read as they did when the key was a plain string; it
    compares and hashes as that string, and JSON writes the string.
    """

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)

    def __repr__(self) -> str:
        return repr(str(self.value))


def _represent_choice(dumper: yaml.SafeDumper, value: Choice) -> yaml.Node:
    return dumper.represent_str(str(value.value))


# yaml.safe_dump of a config holding a Choice (a Serve config file): its value.
yaml.SafeDumper.add_multi_representer(Choice, _represent_choice)

C = TypeVar("C", bound=Choice)


class ColumnType(Choice):
    """A column's type (dataset columns, entity keys, features, request fields).

    ``timestamp`` is UTC-adjusted (Delta's TIMESTAMP), ``timestamp_ntz`` has no
    time zone (TIMESTAMP_NTZ); both in microseconds.
    """

    bool = "bool"
    int8 = "int8"
    int16 = "int16"
    int32 = "int32"
    int64 = "int64"
    float32 = "float32"
    float64 = "float64"
    string = "string"
    date = "date"
    timestamp = "timestamp"
    timestamp_ntz = "timestamp_ntz"


def choices_text(cls: type[Choice], optional: bool = False) -> str:
    """``null, 'a', 'b'``: the values a key of ``cls`` takes, as a message lists them."""
    return ", ".join((["null"] if optional else []) + [repr(m.value) for m in cls])


def not_one_of(key: str, value: Any, cls: type[Choice], optional: bool = False) -> str:
    """The message of a value outside a closed choice."""
    return (f"{key}={value!r} is not one of {choices_text(cls, optional)}."
            f"{did_you_mean(str(value), [m.value for m in cls])}")


def choice(cls: type[C], value: Any, key: str) -> C:
    """``value`` as a member of ``cls`` (a dataclass built in Python passes plain strings)."""
    if isinstance(value, cls):
        return value
    try:
        return cls(value)
    except ValueError:
        raise ConfigValueError(not_one_of(key, value, cls)) from None


def optional_choice(cls: type[C], value: Any, key: str) -> C | None:
    """Like :func:`choice`, with None allowed (None means something at that key)."""
    if value is None:
        return None
    if isinstance(value, cls):
        return value
    try:
        return cls(value)
    except ValueError:
        raise ConfigValueError(not_one_of(key, value, cls, optional=True)) from None


def is_set(value: Any) -> bool:
    """False for None and for a required value not composed yet (``???``)."""
    return value is not None and value != MISSING_VALUE


# -- durations --------------------------------------------------------------------

_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: Any, key: str) -> dt.timedelta:
    """``"36h"``, ``"90m"``, ``"7d"``, ``"2w"``, ``"30s"`` as a timedelta.

    Raises ConfigValueError (a ValueError) naming ``key``:
    ``features.feature_views.weather.ttl='2 hours' is not a duration; ...``.
    """
    m = _DURATION.fullmatch(text) if isinstance(text, str) else None
    if not m:
        raise ConfigValueError(f"{key}={text!r} is not a duration; write e.g. 2h, 30m, 7d "
                               "(a number and one of s, m, h, d, w).")
    delta = dt.timedelta(**{_UNITS[m.group(2)]: float(m.group(1))})
    if delta <= dt.timedelta(0):
        raise ConfigValueError(f"{key}={text!r} must be a positive duration, e.g. 2h, 7d.")
    return delta


def check_duration(text: Any, key: str) -> None:
    """A duration key that is set must parse (None and ``???`` pass)."""
    if is_set(text):
        parse_duration(text, key)


# -- numbers ----------------------------------------------------------------------


def at_least(key: str, value: Any, low: float, example: str = "") -> None:
    """``value >= low`` (None passes: None means something at every key it is checked)."""
    if value is not None and value < low:
        hint = f", e.g. {key}={example}" if example else ""
        raise ConfigValueError(f"{key}={value!r} must be at least {low:g}{hint}.")


def positive(key: str, value: Any, example: str = "") -> None:
    """``value > 0`` (None passes)."""
    if value is not None and not value > 0:
        hint = f", e.g. {key}={example}" if example else ""
        raise ConfigValueError(f"{key}={value!r} must be > 0{hint}.")


def fraction(key: str, value: Any, *, open_high: bool = False) -> None:
    """``0 <= value <= 1`` (``< 1`` with ``open_high``); None passes."""
    if value is None:
        return
    if not (0 <= value < 1 if open_high else 0 <= value <= 1):
        high = "< 1" if open_high else "<= 1"
        raise ConfigValueError(f"{key}={value!r} must be a fraction, >= 0 and {high} "
                               f"(e.g. {key}=0.1).")


def port(key: str, value: Any) -> None:
    """A TCP port (0: any free port)."""
    if not 0 <= value <= 65535:
        raise ConfigValueError(f"{key}={value!r} is not a TCP port; use 1..65535, e.g. 8000.")


def ordered(low_key: str, low: Any, high_key: str, high: Any) -> None:
    """``low <= high`` when both are set."""
    if low is not None and high is not None and low > high:
        raise ConfigValueError(f"{low_key}={low!r} is above {high_key}={high!r}; "
                               f"swap them or raise {high_key}.")


def replicas(key: str, low: int, high: int) -> None:
    """Serve autoscaling bounds: ``0 <= min_replicas <= max_replicas`` and ``max >= 1``."""
    if not 0 <= low <= high or high < 1:
        raise ConfigValueError(
            f"{key}: need 0 <= min_replicas ({low}) <= max_replicas ({high}) and "
            f"max_replicas >= 1; e.g. {key}.min_replicas=1 {key}.max_replicas=2.")


def known(key: str, value: str, names: Iterable[str], what: str) -> None:
    """``value`` must be one of ``names`` (e.g. an entity a view names)."""
    names = list(names)
    if value not in names:
        raise ConfigValueError(f"{key}={value!r} is not a {what}.{did_you_mean(value, names)} "
                               f"Known: {', '.join(names) or 'none'}.")
