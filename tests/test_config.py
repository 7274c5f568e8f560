"""Config composition, fast and without Ray: every shipped option of every group
composes through ``to_config``; every shipped tune space fits the train config it
tunes; closed choices, durations and ranges are checked where the config is read,
with messages that name the key, the bad value and the choices."""

from __future__ import annotations

import datetime as dt

import pytest

from raylake.config import schema
from raylake.config.loader import CONF_DIR, compose_config, config_of_sections, to_config
from raylake.config.schema import (
    AggregationConfig,
    Choice,
    ColumnConfig,
    ConstraintConfig,
    FeaturesConfig,
    FeatureViewConfig,
    IngestConfig,
    OnlineStoreConfig,
    RaylakeConfig,
    TuneConfig,
)
from raylake.config.values import parse_duration
from raylake.errors import ConfigError, ConfigValueError
from raylake.ingest.types import column_specs


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


# conf/pipelines/ holds pipeline files (raylake.pipelines), not a Hydra group of the
# job config; tests/test_pipelines.py checks every shipped pipeline.
GROUPS = sorted(p.name for p in CONF_DIR.iterdir() if p.is_dir() and p.name != "pipelines")
# The `serve` group is composed twice, at two packages (conf/config.yaml's defaults).
SERVE_PACKAGE = {"features": "feature_server", "model": "model_server"}
# Groups whose options carry a `name` key equal to the option.
NAMED = {"dataset": "dataset", "quality": "quality", "features": "features",
         "train": "train", "tune": "tune", "labeling": "labeling", "synth": "synth"}


def override(group: str, option: str) -> list[str]:
    if group == "serve":
        return [f"serve@{SERVE_PACKAGE[option]}={option}"]
    if group == "tune":  # a sweep composes with the trainer it was written for
        trainer = to_config(compose_config([f"tune={option}"])).tune.trainer
        return [f"tune={option}"] + ([f"train={trainer}"] if trainer else [])
    return [f"{group}={option}"]


def test_groups_are_all_covered():
    assert set(GROUPS) == {"active_labeling", "dataset", "experiment", "features", "labeling",
                           "governance", "lake", "monitor", "quality", "ray", "serve", "synth", "train", "tune"}
    assert {"xgboost_gpu", "torch_gpu", "xgboost_no_weather"} <= set(options("train"))
    assert {"none"} <= set(options("quality")) & set(options("features"))


@pytest.mark.parametrize(("group", "option"),
                         [(g, o) for g in GROUPS for o in options(g)])
def test_every_option_of_every_group_composes_through_to_config(group, option):
    conf = to_config(compose_config(override(group, option)))
    assert isinstance(conf, RaylakeConfig)
    if group in NAMED:
        assert getattr(conf, NAMED[group]).name == option
    elif group == "serve":
        server = getattr(conf, SERVE_PACKAGE[option])
        assert server.port in (6566, 8000) and server.min_replicas <= server.max_replicas
    elif group == "lake":
        assert conf.lake.root.startswith("s3://" if option == "s3" else "")
        assert conf.lake.root
    elif group == "ray":
        assert (conf.ray.address is None) == (option == "local")
    elif group == "experiment" and option == "flights_only":
        assert conf.ingest.tables == ["flights"]
    elif group == "experiment" and option == "recsys":
        assert (conf.dataset.name, conf.features.name) == ("recsys_world", "recsys")
        assert conf.train.model_name == conf.recsys.ranker_model
        assert conf.training_set.entity_table == conf.recsys.impressions_table
    elif group == "experiment":
        assert sum(a.weight for a in conf.model_server.arms.values()) == pytest.approx(1)


@pytest.mark.parametrize("option", options("train"))
def test_train_options_name_their_model_and_table(option):
    t = to_config(compose_config([f"train={option}"], job="train")).train
    assert t.trainer in ("xgboost", "torch", "cnn") and option.startswith(t.trainer)
    assert t.model_name and t.table and t.label and t.split.time_column
    assert t.scaling.use_gpu == option.endswith("_gpu")


def test_example_values_live_in_yaml_not_in_the_schema():
    bare = RaylakeConfig()
    for value in (bare.training_set.entity_table, bare.training_set.output_table,
                  bare.training_set.event_timestamp_column, bare.train.model_name,
                  bare.train.trainer, bare.train.table, bare.train.label,
                  bare.train.split.time_column, bare.tune.name):
        assert value == "???"
    assert bare.tune.trainer is None
    conf = to_config(compose_config([], job="chain"))
    assert conf.training_set.entity_table == "flights"
    assert conf.train.model_name == "delay_model"
    assert conf.training_set.feature_service == "delay_model"
    assert conf.train.table == conf.training_set.output_table


def test_a_required_value_left_unset_names_its_key():
    with pytest.raises(ConfigError, match=r"train.model_name is required and not set"):
        to_config(compose_config(["train.model_name=???"]))


@pytest.mark.parametrize("option", options("tune"))
def test_every_shipped_tune_space_fits_the_train_config_it_tunes(option):
    from raylake.train.tune import check_space, search_space, trial_config

    conf = to_config(compose_config(override("tune", option), job="tune"))
    ucfg, tcfg = conf.tune, conf.train
    assert ucfg.trainer in (None, tcfg.trainer)
    assert search_space(ucfg.space)
    check_space(tcfg, ucfg.space)  # what the tune job checks before any trial starts
    for key, spec in ucfg.space.items():  # and every bound or choice, not only the first
        ((kind, args),) = spec.items()
        values = list(args)[:-1] if kind == "randint" else list(args)  # randint: hi excluded
        for value in values:
            trial_config(tcfg, {key: value})


def test_xgboost_gpu_keeps_the_tuned_params():
    params = to_config(compose_config(["train=xgboost_gpu"])).train.xgboost.params
    assert params["device"] == "cuda" and "min_child_weight" in params


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
    with pytest.raises(ConfigError, match="Did you mean 'string'"):
        to_config(compose_config(["dataset=nycflights13_airlines",
                                  "dataset.tables.airlines.columns.name.type=strng"]))


@pytest.mark.parametrize("dataset", options("dataset"))
def test_every_dataset_composes_and_types_resolve(dataset):
    cfg = to_config(compose_config([f"dataset={dataset}"]))
    assert cfg.dataset.tables or cfg.dataset.images
    for key, table in cfg.dataset.tables.items():
        specs = column_specs(table.columns, key)
        names = [s.name for s in specs]
        assert set(table.primary_key) <= set(names)
        assert set(table.partition_by) <= set(names)


def test_nycflights13_has_the_five_tables():
    cfg = to_config(compose_config(["dataset=nycflights13"]))
    assert list(cfg.dataset.tables) == ["airlines", "airports", "planes", "weather", "flights"]


def test_misspelled_key_in_a_dataset_file_is_an_error(tmp_path):
    (tmp_path / "dataset").mkdir()
    (tmp_path / "dataset" / "mine.yaml").write_text(
        "name: mine\ntables:\n  t:\n    source: {path: x.csv}\n    primary_keys: [id]\n"
    )
    with pytest.raises(ConfigError, match="primary_keys"):
        compose_config([f"hydra.searchpath=[file://{tmp_path}]", "dataset=mine"])


def test_a_bad_choice_in_a_yaml_file_names_its_full_key(tmp_path):
    (tmp_path / "dataset").mkdir()
    (tmp_path / "dataset" / "mine.yaml").write_text(
        "name: mine\ntables:\n  t:\n    source: {path: x.csv, format: cvs}\n")
    with pytest.raises(ConfigError, match=r"dataset.tables.t.source.format='cvs' is not one of "
                                          r"null, 'csv', 'parquet', 'jsonl'. Did you mean 'csv'"):
        compose_config([f"hydra.searchpath=[file://{tmp_path}]", "dataset=mine"])


# -- closed choices ----------------------------------------------------------------

# One override per Enum-typed key: (override, the choices its message must list).
BAD_CHOICES = [
    ("online.type=rediss", "'sqlite', 'redis'. Did you mean 'redis'"),
    ("quality.tables.flights.constraints.0.check=not_nul", "'not_null', 'range', 'in_set'"),
    ("quality.tables.flights.constraints.0.policy=stop", "'quarantine', 'fail', 'warn'"),
    ("ingest.inject_failure=write_", "null, 'write', 'commit'"),
    ("tune.scheduler.type=hyperband", "'asha', 'fifo'"),
    ("tune.mode=minimum", "'min', 'max'"),
    ("tune.time_attr=rounds", "'round', 'epoch'. Did you mean 'round'"),
    ("ab_report.join_on=user_id", "'request_id', 'unit_id'"),
    ("ab_report.metric=ratio", "'auto', 'rate', 'mean'"),
    ("++drift.thresholds={x: {metric: kl}}", "null, 'pvalue', 'ks', 'ks_pvalue', 'mean_pvalue'"),
    ("dataset.tables.flights.source.format=xlsx", "null, 'csv', 'parquet', 'jsonl'"),
    ("dataset.tables.flights.mode=upsert", "'append', 'overwrite', 'merge'"),
    ("+dataset.tables.flights.cleanse=[{op: trimm, columns: [tailnum]}]",
     "'trim', 'lower', 'upper', 'impute', 'clip', 'scale', 'dedup_latest'. Did you mean 'trim'"),
    ("dataset.tables.flights.columns.year.type=int", "'int8', 'int16', 'int32', 'int64'"),
    ("features.entities.plane.value_type=str", "'bool', 'int8'"),
    ("features.feature_views.weather.features.temp.type=double", "'float32', 'float64'"),
    ("features.on_demand_feature_views.departure_time.request.sched_dep_time=short",
     "'int16'"),
    ("features.aggregations.carrier_delay.functions=[mean,avg]",
     "'mean', 'sum', 'count', 'min', 'max'"),
    ("train.scaling.backend=mpi", "null, 'gloo', 'nccl'"),
]


@pytest.mark.parametrize(("override", "choices"), BAD_CHOICES,
                         ids=[o.split("=")[0].lstrip("+") for o, _ in BAD_CHOICES])
def test_each_closed_choice_rejects_a_bad_value_naming_the_choices(override, choices):
    with pytest.raises(ConfigError) as err:
        to_config(compose_config([override]))
    assert "is not one of" in str(err.value) and choices in str(err.value)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: OnlineStoreConfig(type="rediss"),
         r"online.type='rediss' is not one of 'sqlite', 'redis'. Did you mean 'redis'"),
        (lambda: ConstraintConfig(name="c", check="ranges"), r"Did you mean 'range'"),
        (lambda: ConstraintConfig(name="c", check="unique", policy="stop"),
         r"constraint 'c': policy='stop' is not one of 'quarantine', 'fail', 'warn'"),
        (lambda: IngestConfig(inject_failure="sometimes"),
         r"ingest.inject_failure='sometimes' is not one of null, 'write', 'commit'"),
        (lambda: ColumnConfig(type="strng"), r"Did you mean 'string'"),
        (lambda: TuneConfig(mode="mn"), r"tune.mode='mn' is not one of 'min', 'max'"),
        (lambda: AggregationConfig(functions=["mean", "avg"]), r"'mean', 'sum', 'count'"),
    ],
)
def test_dataclasses_built_in_python_check_their_choices_too(build, message):
    with pytest.raises(ConfigValueError, match=message):
        build()


def test_every_choice_key_is_an_enum_and_reads_as_its_plain_value():
    conf = to_config(compose_config([]))
    assert conf.online.type == "sqlite" and f"{conf.online.type}" == "sqlite"
    check = conf.quality.tables["flights"].constraints[0].check
    assert isinstance(check, Choice) and str(check) == "not_null" and f"{check:<9}|" == "not_null |"
    assert repr(check) == "'not_null'" and {check: 1} == {"not_null": 1}
    ctype = conf.dataset.tables["flights"].columns["time_hour"].type
    assert isinstance(ctype, Choice) and ctype == "timestamp"
    # names equal values: the run record keeps names (enum_to_str), --from-run reads them back
    for cls in Choice.__subclasses__():
        assert all(m.name == m.value for m in cls), cls
    assert isinstance(conf.train.trainer, str) and not isinstance(conf.train.trainer, Choice)


def test_a_recorded_config_reads_back_like_train_from_run():
    from omegaconf import OmegaConf

    cfg = compose_config(["online.type=redis", "tune.mode=max"], job="train")
    recorded = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    assert recorded["online"]["type"] == "redis"
    back = to_config(OmegaConf.merge(OmegaConf.structured(RaylakeConfig), recorded))
    assert back.online.type == "redis" and back.tune.mode == "max"
    assert back == to_config(cfg)


def test_serve_args_round_trip_through_yaml_and_the_shipped_defaults():
    import json
    from dataclasses import asdict

    import yaml

    conf = to_config(compose_config(["model_server.feature_service=delay_model"]))
    args = {"lake": {"root": "s3://b/lake", "storage_options": {}},
            "model_server": asdict(conf.model_server), "features": asdict(conf.features),
            "online": asdict(conf.online)}
    text = yaml.safe_dump(args)  # a Serve config file holds the choices as plain strings
    assert "type: sqlite" in text and "!!python" not in text
    assert json.loads(json.dumps(args))["online"]["type"] == "sqlite"
    back = config_of_sections(yaml.safe_load(text))
    assert back.lake.root == "s3://b/lake" and back.features == conf.features
    assert back.train.model_name == "delay_model"  # a section not given: the shipped one


# -- durations and ranges ----------------------------------------------------------


def test_parse_duration():
    assert parse_duration("36h", "k") == dt.timedelta(hours=36)
    assert parse_duration(" 1.5d ", "k") == dt.timedelta(days=1.5)
    assert parse_duration("2w", "k") == dt.timedelta(weeks=2)
    with pytest.raises(ValueError, match=r"^k='2 hours' is not a duration; write e.g. 2h"):
        parse_duration("2 hours", "k")
    with pytest.raises(ValueError, match="must be a positive duration"):
        parse_duration("0h", "k")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("features.feature_views.weather.ttl=2 hours",
         r"features.feature_views.weather.ttl='2 hours' is not a duration; write e.g. 2h, 30m, 7d"),
        ("features.aggregations.route_delay.window=4 weeks",
         r"features.aggregations.route_delay.window='4 weeks' is not a duration"),
        ("features.aggregations.route_delay.step=daily",
         r"features.aggregations.route_delay.step='daily' is not a duration"),
        ("quality.tables.flights.constraints.13.max_age=soon",
         r"quality.tables.flights.constraints\[13\].max_age='soon' is not a duration"),
    ],
)
def test_a_bad_duration_names_its_key(override, message):
    with pytest.raises(ConfigError, match=message):
        to_config(compose_config([override]))


def test_a_bad_ttl_names_its_view_when_built_in_python():
    with pytest.raises(ConfigValueError, match=r"features.feature_views.v.ttl='soon'"):
        FeaturesConfig(feature_views={"v": FeatureViewConfig(source="t", ttl="soon")})


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("ray.num_cpus=0", r"ray.num_cpus=0 must be at least 1"),
        ("ray.data_task_cpus=0", r"ray.data_task_cpus=0.0 must be > 0"),
        ("ingest.max_quarantine_fraction=1.5", r"ingest.max_quarantine_fraction=1.5 must be a fraction"),
        ("profile.actors=0", r"profile.actors=0 must be at least 1"),
        ("drift.dataset_share=2", r"drift.dataset_share=2.0 must be a fraction"),
        ("quality.tables.flights.constraints.7.min=13",
         r"constraints\[7\].min=13.0 is above quality.tables.flights.constraints\[7\].max=12.0"),
        ("quality.tables.flights.constraints.2.max=5", r"constraints\[2\].max=5.0 must be a fraction"),
        ("train.split.valid_fraction=0.9", r"train.split.valid_fraction=0.9 \+ test_fraction=0.15"),
        ("train.split.test_fraction=-0.1", r"train.split.test_fraction=-0.1 must be a fraction"),
        ("train.scaling.num_workers=0", r"train.scaling.num_workers=0 must be at least 1"),
        ("train.torch.dropout=1", r"train.torch.dropout=1.0 must be a fraction"),
        ("train.torch.lr=0", r"train.torch.lr=0.0 must be > 0"),
        ("train.xgboost.num_boost_round=0", r"train.xgboost.num_boost_round=0 must be at least 1"),
        ("train.checkpoint_every=0", r"train.checkpoint_every=0 must be at least 1"),
        ("train.cost.per=0", r"train.cost.per=0 must be at least 1"),
        ("tune.num_samples=0", r"tune.num_samples=0 must be at least 1"),
        ("tune.scheduler.grace_period=0", r"grace_period=0 must be >= 1"),
        ("tune.scheduler.reduction_factor=1", r"reduction_factor=1.0 must be > 1"),
        ("model_server.min_replicas=3", r"model_server: need 0 <= min_replicas \(3\)"),
        ("model_server.port=70000", r"model_server.port=70000 is not a TCP port"),
        ("feature_server.max_batch=0", r"feature_server.max_batch=0 must be at least 1"),
        ("online.port=-1", r"online.port=-1 is not a TCP port"),
        ("batch_predict.actors=0", r"batch_predict.actors=0 must be at least 1"),
        ("ab_report.alpha=1.5", r"ab_report.alpha=1.5 must be in \(0, 1\)"),
        ("training_set.broadcast_rows=-1", r"training_set.broadcast_rows=-1 must be at least 0"),
        ("dataset.tables.flights.primary_key=[time_hour,carier]",
         r"dataset.tables.flights.primary_key\[1\]='carier' is not a declared column. "
         r"Did you mean 'carrier'"),
        ("dataset.tables.airlines.primary_key=[]",
         r"dataset.tables.airlines.mode=merge upserts on the primary key"),
    ],
)
def test_bad_values_name_the_key_the_value_and_the_fix(override, message):
    with pytest.raises(ConfigError, match=message):
        to_config(compose_config([override]))


def test_every_config_dataclass_is_exported_from_schema():
    import raylake.config.features
    import raylake.config.ingest
    import raylake.config.lake
    import raylake.config.quality
    import raylake.config.serving
    import raylake.config.training

    modules = (raylake.config.lake, raylake.config.ingest, raylake.config.quality,
               raylake.config.features, raylake.config.training, raylake.config.serving)
    for module in modules:
        for name, obj in vars(module).items():
            if isinstance(obj, type) and obj.__module__ == module.__name__:
                assert getattr(schema, name) is obj and name in schema.__all__, name
