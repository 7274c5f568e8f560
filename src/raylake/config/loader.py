"""Compose raylake's Hydra config outside ``@hydra.main`` and explain bad keys.

The CLI's jobs run under ``@hydra.main`` (so ``-m`` multirun, ``--cfg`` and
``--help`` work); admin commands and tests compose the same config here.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from raylake.config.schema import RaylakeConfig, register_configs
from raylake.errors import ConfigError, did_you_mean

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
CONFIG_NAME = "config"


def compose_config(overrides: Sequence[str] = (), *, job: str = "ingest") -> DictConfig:
    """Compose ``conf/config.yaml`` with Hydra overrides into a checked config."""
    check_overrides(overrides)
    register_configs()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(str(CONF_DIR), version_base="1.3", job_name=job):
            cfg = compose(CONFIG_NAME, overrides=[*overrides, f"job={job}"])
    except (HydraException, OmegaConfBaseException) as exc:
        raise ConfigError(f"{exc}\nFix the override or the YAML file it names.") from exc
    finally:
        GlobalHydra.instance().clear()
    return cfg


def to_config(cfg: DictConfig | RaylakeConfig) -> RaylakeConfig:
    """Resolve interpolations and return the typed dataclass tree."""
    if isinstance(cfg, RaylakeConfig):
        return cfg
    try:
        obj = OmegaConf.to_object(cfg)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"{exc}\nSet the missing value (a `???` in the config).") from exc
    except ValueError as exc:  # a dataclass __post_init__ check
        raise ConfigError(str(exc)) from exc
    assert isinstance(obj, RaylakeConfig)
    return obj


def check_overrides(overrides: Sequence[str]) -> None:
    """Fail early with the nearest valid key for a misspelled override key.

    Hydra alone reports ``Key 'rooot' is not in struct``; users deserve the key
    they meant. Keys under free-form mappings (``lake.storage_options``,
    ``dataset.tables``) and ``+``/``~`` overrides are left to Hydra.
    """
    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except HydraException as exc:
        raise ConfigError(f"Cannot parse overrides {list(overrides)}: {exc}") from exc
    schema = OmegaConf.structured(RaylakeConfig)
    for ov in parsed:
        if ov.is_add() or ov.is_delete() or ov.is_force_add() or ov.package:
            continue
        key = ov.key_or_group
        if key.startswith("hydra") or key in ("experiment", "local"):
            continue
        _check_key(schema, key)


def _check_key(schema: Any, key: str) -> None:
    node = schema
    seen: list[str] = []
    for part in key.split("."):
        if not isinstance(node, DictConfig):
            return
        if OmegaConf.get_type(node) is dict:  # free-form mapping: any key goes
            return
        if part not in node:
            where = ".".join(seen) or "the top level"
            raise ConfigError(
                f"Unknown config key '{key}': '{part}' is not a key of {where}."
                f"{did_you_mean(part, list(node.keys()))} "
                f"Valid keys there: {', '.join(sorted(node.keys()))}."
            )
        seen.append(part)
        node = node._get_node(part)
