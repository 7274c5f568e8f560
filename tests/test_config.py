"""Config composition: every shipped option composes; bad keys and types are clear errors."""

from __future__ import annotations

import pytest

from raylake.config.loader import CONF_DIR, compose_config, to_config
from raylake.errors import ConfigError
from raylake.ingest.types import column_specs


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


@pytest.mark.parametrize("dataset", options("dataset"))
def test_every_dataset_composes_and_types_resolve(dataset):
    cfg = to_config(compose_config([f"dataset={dataset}"]))
    assert cfg.dataset.tables
    for key, table in cfg.dataset.tables.items():
        specs = column_specs(table.columns, key)
        names = [s.name for s in specs]
        assert set(table.primary_key) <= set(names)
        assert set(table.partition_by) <= set(names)


def test_nycflights13_has_the_five_tables():
    cfg = to_config(compose_config(["dataset=nycflights13"]))
    assert list(cfg.dataset.tables) == ["airlines", "airports", "planes", "weather", "flights"]


@pytest.mark.parametrize("group", ["experiment", "lake", "ray"])
def test_every_option_of_group_composes(group):
    for option in options(group):
        compose_config([f"{group}={option}"])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("lake.rooot=/x", "Did you mean 'root'"),
        ("ingest.tabels=[a]", "Did you mean 'tables'"),
        ("datset=nycflights13", "Did you mean 'dataset'"),
        ("ray.num_cpus=many", "ray.num_cpus"),
        ("dataset=nycflights", "Could not find 'dataset/nycflights'"),
        ("ingest.inject_failure=sometimes", "not one of null, 'write', 'commit'"),
    ],
)
def test_bad_overrides_say_what_to_fix(override, message):
    with pytest.raises(ConfigError, match=message):
        to_config(compose_config([override]))


def test_unknown_column_type_suggests():
    cfg = to_config(compose_config(["dataset=nycflights13_airlines",
                                    "dataset.tables.airlines.columns.name.type=strng"]))
    with pytest.raises(ConfigError, match="Did you mean 'string'"):
        column_specs(cfg.dataset.tables["airlines"].columns, "airlines")


def test_misspelled_key_in_a_dataset_file_is_an_error(tmp_path):
    (tmp_path / "dataset").mkdir()
    (tmp_path / "dataset" / "mine.yaml").write_text(
        "name: mine\ntables:\n  t:\n    source: {path: x.csv}\n    primary_keys: [id]\n"
    )
    with pytest.raises(ConfigError, match="primary_keys"):
        compose_config([f"hydra.searchpath=[file://{tmp_path}]", "dataset=mine"])
