"""Compose raylake's Hydra config outside ``@hydra.main`` and explain bad keys.

The CLI's jobs run under ``@hydra.main`` (so ``-m`` multirun, ``--cfg`` and
``--help`` work); admin commands and tests compose the same config here.
"""

from __future__ import annotations

import copy
import functools
import re
import typing
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from raylake.config import schema as schema_module
from raylake.config.redact import REDACTED, is_secret_name, without_redacted
from raylake.config.schema import RaylakeConfig, register_configs
from raylake.errors import ConfigError, did_you_mean

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
CONFIG_NAME = "config"


def compose_config(overrides: Sequence[str] = (), *, job: str = "ingest") -> DictConfig:
    """Compose ``conf/config.yaml`` with Hydra overrides into a checked config."""
    parsed = check_overrides(overrides)
    register_configs()
    try:
        if any(ov.is_sweep_override() or ov.key_or_group.startswith("hydra") for ov in parsed):
            # A sweep gets Hydra's own refusal; `hydra.searchpath` changes which files
            # and groups exist, so the cache below does not apply.
            return _compose([*overrides, f"job={job}"])
        groups = tuple(ov.input_line for ov in parsed if _selects_group(ov))
        values = [ov for ov in parsed if not _selects_group(ov)]
        values += OverridesParser.create().parse_overrides([f"job={job}"])
        # Hydra composes the group choices, then applies the value overrides to the
        # result (config_loader_impl); the same two steps, with the first cached: a
        # compose costs about a second and every job, test and Serve app composes.
        cfg = copy.deepcopy(_composed(groups))
        ConfigLoaderImpl._apply_overrides_to_config(values, cfg)
    except (HydraException, OmegaConfBaseException) as exc:
        raise ConfigError(_masked(f"{_explain(exc)}\nFix the override or the YAML file it "
                                  "names.", overrides)) from exc
    return cfg


def _compose(overrides: list[str]) -> DictConfig:
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(str(CONF_DIR), version_base="1.3", job_name="raylake"):
            return compose(CONFIG_NAME, overrides=overrides)
    finally:
        GlobalHydra.instance().clear()


@functools.lru_cache(maxsize=32)
def _composed(groups: tuple[str, ...]) -> DictConfig:
    """The config with these group choices and no value overrides (never handed out:
    callers get a copy)."""
    return _compose(list(groups))


@functools.lru_cache(maxsize=None)
def _group_exists(name: str) -> bool:
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(str(CONF_DIR), version_base="1.3", job_name="raylake"):
            loader = GlobalHydra.instance().config_loader()
            assert isinstance(loader, ConfigLoaderImpl)
            return bool(loader.repository.group_exists(name))
    finally:
        GlobalHydra.instance().clear()


def _selects_group(ov: Override) -> bool:
    """Hydra's own test (defaults_list.Overrides): a group choice, not a value."""
    return _group_exists(ov.key_or_group) and not isinstance(ov.value(), dict)


def to_config(cfg: DictConfig | RaylakeConfig) -> RaylakeConfig:
    """Resolve interpolations and return the typed dataclass tree."""
    if isinstance(cfg, RaylakeConfig):
        return cfg
    try:
        obj = OmegaConf.to_object(cfg)
    except MissingMandatoryValue as exc:
        key = exc.full_key or "a value"
        raise ConfigError(f"{key} is required and not set (a `???` in the config): set it in "
                          f"the YAML or as an override, e.g. {key}=...") from exc
    except OmegaConfBaseException as exc:
        raise ConfigError(f"{exc}\nFix the value in the YAML or the override.") from exc
    except ConfigError:
        raise  # a dataclass __post_init__ check: its message names key, value and fix
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    assert isinstance(obj, RaylakeConfig)
    return obj


def config_of_sections(sections: Mapping[str, Any]) -> RaylakeConfig:
    """The typed config of a process handed only some sections (a Serve app's args).

    A section given is read over the schema's defaults, as a whole config's would be;
    every other section is the shipped default config's, which sets the values the
    schema leaves required (``???``: the example's tables and model names live in YAML).
    """
    # A redacted value (a credential the writer of the file left out) is not a value:
    # the default applies, and the storage options then come from the environment.
    sections = without_redacted(dict(sections))
    shipped = compose_config()
    rest = {k: v for k, v in shipped.items() if k not in sections}
    base = OmegaConf.structured(RaylakeConfig)
    try:
        merged = OmegaConf.merge(base, rest, dict(sections))
    except OmegaConfBaseException as exc:
        raise ConfigError(f"{_explain(exc)}\nFix the config the app was given.") from exc
    assert isinstance(merged, DictConfig)
    return to_config(merged)


# OmegaConf's message for a value outside an Enum's members.
_NOT_A_MEMBER = re.compile(r"Invalid value '(?P<value>.*?)', expected one of \[(?P<choices>.*?)\]"
                           r"\s*full_key: (?P<key>\S+).*?object_type=(?P<owner>\w+)", re.S)


def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen: BaseException | None = exc
    while seen is not None:
        yield seen
        seen = seen.__cause__


def _explain(exc: BaseException) -> str:
    """Hydra's message, with the cause it wraps and, for a closed choice, the choices."""
    text = str(exc)
    for cause in list(_causes(exc))[1:]:
        if str(cause) and str(cause) not in text and "$" not in str(cause):
            text += f"\n{cause}"
    m = _NOT_A_MEMBER.search(text)
    if m is None:
        return text
    key, value = m["key"], m["value"]
    choices = [c.strip() for c in m["choices"].split(",")]
    shown = (["null"] if _is_optional(m["owner"], key.rsplit(".", 1)[-1]) else []) + \
        [repr(c) for c in choices]
    return (f"{key}={value!r} is not one of {', '.join(shown)}."
            f"{did_you_mean(value, choices)}")


def _is_optional(owner: str, field: str) -> bool:
    """Whether ``owner`` (a config dataclass's name) allows None at ``field``."""
    cls = getattr(schema_module, owner, None)
    if cls is None:
        return False
    hint = typing.get_type_hints(cls).get(field)
    return typing.get_origin(hint) is typing.Union and type(None) in typing.get_args(hint)


@functools.lru_cache(maxsize=1)
def _schema() -> DictConfig:
    """The schema as OmegaConf nodes, read only (building it costs a third of a second)."""
    schema = OmegaConf.structured(RaylakeConfig)
    OmegaConf.set_readonly(schema, True)
    assert isinstance(schema, DictConfig)
    return schema


def check_overrides(overrides: Sequence[str]) -> list[Override]:
    """Fail early with the nearest valid key for a misspelled override key.

    Hydra alone reports ``Key 'rooot' is not in struct``; users deserve the key
    they meant. Keys under free-form mappings (``lake.storage_options``,
    ``dataset.tables``) and ``+``/``~`` overrides are left to Hydra.
    """
    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except HydraException as exc:
        raise ConfigError(_masked(f"Cannot parse overrides {list(overrides)}: {exc}",
                                  overrides)) from exc
    schema = _schema()
    for ov in parsed:
        if ov.is_add() or ov.is_delete() or ov.is_force_add() or ov.package:
            continue
        key = ov.key_or_group
        if key.startswith("hydra") or key in ("experiment", "local"):
            continue
        _check_key(schema, key)
    return parsed


def _masked(text: str, overrides: Sequence[str]) -> str:
    """``text`` with the values of credential-like overrides (``...SECRET...=v``)
    replaced by the redaction marker: an error message is printed, and may be logged."""
    for ov in overrides:
        key, sep, value = ov.partition("=")
        if sep and value and is_secret_name(key.rsplit(".", 1)[-1]):
            text = text.replace(value, REDACTED)
    return text


def _check_key(schema: Any, key: str) -> None:
    node = schema
    seen: list[str] = []
    for part in key.split("."):
        if not isinstance(node, DictConfig):
            return
        if OmegaConf.get_type(node) is dict:  # free-form mapping: any key goes
            return
        keys = [str(k) for k in node.keys()]
        if part not in keys:  # not `in node`: that is False for a key whose value is `???`
            where = ".".join(seen) or "the top level"
            raise ConfigError(
                f"Unknown config key '{key}': '{part}' is not a key of {where}."
                f"{did_you_mean(part, keys)} Valid keys there: {', '.join(sorted(keys))}."
            )
        seen.append(part)
        node = node._get_node(part)
