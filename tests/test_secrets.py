"""Secrets are never stored: the redaction rules (config/redact.py) and every place that
persists config (run records, the model registry, the Serve config file and Serve
arguments), without Ray. The whole chain with a planted secret is in test_chain.py."""

from __future__ import annotations

import dataclasses
import json
import typing
import uuid
from types import SimpleNamespace

import numpy as np
import pytest
import xgboost as xgb
from omegaconf import OmegaConf
from secretscan import PLANT, files_holding

from raylake.config.loader import compose_config, config_of_sections, to_config
from raylake.config.redact import (
    NON_SECRET_NAMES,
    REDACTED,
    env_paths,
    is_secret_name,
    redact,
    redact_options,
    redacted_container,
    without_redacted,
)
from raylake.config.schema import RaylakeConfig
from raylake.lake import Lake, Storage
from raylake.lake.runs import get_run
from raylake.runner import job


@pytest.fixture
def planted(monkeypatch) -> str:
    """A secret nobody could guess, in the environment as RAYLAKE_PLANTED."""
    secret = f"planted-{uuid.uuid4().hex}"
    monkeypatch.setenv("RAYLAKE_PLANTED", secret)
    return secret


# -- the rules ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", [
    "AWS_SECRET_ACCESS_KEY", "aws_session_token", "AWS_ACCESS_KEY_ID", "password",
    "db_passwd", "AZURE_STORAGE_ACCOUNT_KEY", "GOOGLE_SERVICE_ACCOUNT_KEY", "api_key",
    "apiKey", "token", "key", "client_secret", "azure_storage_sas_token", "credentials",
])
def test_credential_like_names_are_secret(name):
    assert is_secret_name(name)


@pytest.mark.parametrize("name", [
    "primary_key", "join_keys", "keys", "AWS_REGION", "AWS_ENDPOINT_URL", "root",
    "AWS_WEB_IDENTITY_TOKEN_FILE", "api_keys_file", "token_env", "monkey_path",
])
def test_non_secret_names_and_pointers_to_secrets_stay(name):
    assert not is_secret_name(name)


def test_every_schema_field_with_a_secret_word_is_a_known_non_secret_name():
    """A new config field named like a credential is redacted everywhere, including the
    Serve config a replica reads: name it here on purpose, or not like a secret."""
    flagged, seen = [], set()

    def walk(kind, path):
        origin = typing.get_origin(kind)
        if origin is not None:
            for arg in typing.get_args(kind):
                walk(arg, path)
        elif dataclasses.is_dataclass(kind) and kind not in seen:
            seen.add(kind)
            hints = typing.get_type_hints(kind)
            for f in dataclasses.fields(kind):
                if is_secret_name(f.name):
                    flagged.append(f"{path}{f.name}")
                walk(hints[f.name], f"{path}{f.name}.")

    walk(RaylakeConfig, "")
    assert flagged == [], f"secret-like config fields: {flagged} (NON_SECRET_NAMES: " \
                          f"{sorted(NON_SECRET_NAMES)})"


@pytest.mark.parametrize("overrides", [[], ["lake=s3", "ray=cluster"]])
def test_the_shipped_config_is_unchanged_by_redaction(overrides):
    """Its interpolations read where the lake and Ray are (RAYLAKE_LAKE_ROOT, AWS_REGION,
    RAY_ADDRESS): no secret, and a record or a Serve config needs them."""
    for name in ("chain", "serve"):
        cfg = compose_config(overrides, job=name)
        plain = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
        assert env_paths(cfg) == frozenset()
        assert redacted_container(cfg) == plain


def test_keys_are_redacted_in_nested_dicts_and_lists_names_of_tables_and_columns_stay():
    config = {
        "lake": {"root": "s3://b/lake", "storage_options": {
            "AWS_REGION": "eu-west-1", "aws_secret_access_key": "s1", "AWS_SESSION_TOKEN": "t"}},
        "dataset": {"tables": {"api_keys": {  # a table and a column named like secrets
            "primary_key": ["token"], "columns": {"secret": {"type": "string"}}}}},
        "train": {"xgboost": {"params": {"max_depth": 3}}},
        "extra": {"services": [{"name": "a", "password": "p"}, {"api_key": ["k1", "k2"]}],
                  "keys": ["a", "b"], "nested": {"deeper": {"Client_Secret": "c"}}},
    }
    out = redact(config)
    assert out["lake"]["storage_options"] == {
        "AWS_REGION": "eu-west-1", "aws_secret_access_key": REDACTED, "AWS_SESSION_TOKEN": REDACTED}
    assert out["dataset"] == config["dataset"]
    assert out["train"] == config["train"]
    assert out["extra"] == {
        "services": [{"name": "a", "password": REDACTED}, {"api_key": REDACTED}],
        "keys": ["a", "b"], "nested": {"deeper": {"Client_Secret": REDACTED}}}
    assert config["lake"]["storage_options"]["aws_secret_access_key"] == "s1"  # a copy


def test_values_from_the_environment_are_redacted_whatever_their_key(planted, monkeypatch):
    monkeypatch.setenv("RAYLAKE_TEST_REGION", "eu-north-1")
    monkeypatch.setenv("RAYLAKE_TEST_COLUMN", "flight")
    cfg = compose_config([
        "lake.root=/tmp/nowhere", PLANT,
        "+lake.storage_options.AWS_REGION=${oc.env:RAYLAKE_TEST_REGION}",
        "+lake.storage_options.AWS_ENDPOINT_URL=http://localhost:9000",
        "train.seed=${oc.env:RAYLAKE_TEST_SEED,7}",  # a default still reads the environment
        "train.model_name=m-${oc.env:RAYLAKE_PLANTED}",  # inside a string
        "model=${train.model_name}",  # a reference to an env-derived value
        "dataset.tables.flights.primary_key=[${oc.env:RAYLAKE_TEST_COLUMN},carrier]",
    ])
    paths = env_paths(cfg)
    assert {("lake", "storage_options", "AWS_SECRET_ACCESS_KEY"),
            ("lake", "storage_options", "AWS_REGION"), ("train", "seed"),
            ("train", "model_name"), ("model",),
            ("dataset", "tables", "flights", "primary_key", 0)} <= paths
    assert ("lake", "storage_options", "AWS_ENDPOINT_URL") not in paths
    out = redacted_container(cfg)
    assert out["lake"]["storage_options"] == {"AWS_SECRET_ACCESS_KEY": REDACTED,
                                              "AWS_REGION": REDACTED,
                                              "AWS_ENDPOINT_URL": "http://localhost:9000"}
    assert (out["train"]["seed"], out["train"]["model_name"], out["model"]) == (REDACTED,) * 3
    assert out["dataset"]["tables"]["flights"]["primary_key"] == [REDACTED, "carrier"]
    assert planted not in json.dumps(out)
    assert to_config(cfg).lake.storage_options["AWS_SECRET_ACCESS_KEY"] == planted  # still used


def test_relative_references_and_whole_sections_from_the_environment():
    cfg = OmegaConf.create({
        "a": {"secretless": "${oc.env:RAYLAKE_X,1}", "copy": "${.secretless}",
              "up": "${..b.plain}"},
        "b": {"plain": "v", "all": "${oc.decode:${oc.env:RAYLAKE_OPTS,'{}'}}"},
        "c": "${b}",
    })
    paths = env_paths(cfg)
    assert {("a", "secretless"), ("a", "copy"), ("b", "all"), ("c",)} <= paths
    assert ("a", "up") not in paths  # b.plain is a literal
    out = redact({"a": {"x": 1}, "b": {"all": {"k": "v"}}}, {("b", "all")}, schema=object)
    assert out == {"a": {"x": 1}, "b": {"all": REDACTED}}


def test_redacted_values_are_never_used():
    options = {"AWS_REGION": "eu-west-1", "AWS_SECRET_ACCESS_KEY": "s", "AWS_ACCESS_KEY_ID": "i"}
    shared = redact_options(options)
    assert shared == {"AWS_REGION": "eu-west-1", "AWS_SECRET_ACCESS_KEY": REDACTED,
                      "AWS_ACCESS_KEY_ID": REDACTED}
    assert Storage.from_config("s3://bucket/lake", shared).options == {"AWS_REGION": "eu-west-1"}
    assert without_redacted({"a": REDACTED, "b": [REDACTED, {"c": REDACTED}], "d": 1}) == \
        {"b": [REDACTED, {}], "d": 1}


# -- where config persists ---------------------------------------------------------------


@job("test-secrets-record", help="a job whose run record is checked for secrets", ray=False)
def _recorded(ctx):
    return {"summary": f"ran on {ctx.conf.lake.root}"}


def test_a_run_record_holds_the_marker_not_the_secret(tmp_path, planted):
    root = str(tmp_path / "lake")
    lines: list[str] = []
    out = _recorded(compose_config([f"lake.root={root}", PLANT,
                                    "+lake.storage_options.password=literal-pw"]),
                    echo=lines.append)
    config = get_run(Lake(Storage.from_config(root)), out["run_id"])["config"]
    assert config["lake"]["storage_options"] == {"AWS_SECRET_ACCESS_KEY": REDACTED,
                                                 "password": REDACTED}
    assert config["lake"]["root"] == root
    assert files_holding(root, planted) == [] and files_holding(root, "literal-pw") == []
    assert files_holding(root, REDACTED), "the scan must see inside the run record's Parquet"
    assert planted not in "\n".join(lines)


def test_the_scan_sees_a_string_inside_a_run_record(lake):
    """The scan's own check: a value a run record keeps is found in the lake's files."""
    from raylake.lake.runs import RunRecorder

    visible = f"visible-{uuid.uuid4().hex}"
    with RunRecorder(lake, "probe", {"note": visible}):
        pass
    assert files_holding(lake.root, visible)


def test_the_registry_stores_the_config_redacted(lake):
    from raylake.models import ModelRegistry

    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 2))
    booster = xgb.train({"objective": "binary:logistic", "nthread": 1},
                        xgb.DMatrix(x, label=(x[:, 0] > 0).astype(float)), num_boost_round=2)
    config = {"lake": {"root": "s3://b/l", "storage_options": {"AWS_SECRET_ACCESS_KEY": "s3cr3t",
                                                               "AWS_REGION": "eu-west-1"}},
              "train": {"max_depth": 3}}
    mv = ModelRegistry(lake).register(
        "secretive", booster, flavor="xgboost",
        features=[{"name": "x0", "type": "float64"}, {"name": "x1", "type": "float64"}],
        training={"table": "t", "version": 0}, config=config, metrics={"auc": 0.5},
        run_id=None)
    stored = ModelRegistry(lake).get(f"secretive:{mv.version}").config
    assert stored["lake"]["storage_options"] == {"AWS_SECRET_ACCESS_KEY": REDACTED,
                                                 "AWS_REGION": "eu-west-1"}
    assert stored["train"] == {"max_depth": 3}
    assert files_holding(lake.root, "s3cr3t") == []


def test_the_serve_config_file_is_redacted_and_still_deploys(tmp_path, planted, monkeypatch):
    """The file `raylake serve` writes for `serve deploy`: no secret in it, and the app it
    describes builds its config (the redacted options left out: from the environment)."""
    import yaml

    from raylake.serve.app import config_from_args
    from raylake.serve.deploy import serve_config, write_serve_config

    monkeypatch.setenv("RAYLAKE_TEST_ENDPOINT", "http://localhost:9000")
    cfg = compose_config([
        "lake.root=s3://bucket/lake", PLANT,
        "+lake.storage_options.AWS_ENDPOINT_URL=${oc.env:RAYLAKE_TEST_ENDPOINT}",
        "+lake.storage_options.AWS_REGION=eu-west-1", "model_server.feature_service=delay_model",
    ], job="serve")
    arms = [SimpleNamespace(name="a", model="delay_model", version=1, weight=1.0, shadow=False)]
    path = tmp_path / "serve.yaml"
    write_serve_config(str(path), serve_config(to_config(cfg), arms, env_paths(cfg)))
    text = path.read_text()
    assert planted not in text and "localhost:9000" not in text
    args = yaml.safe_load(text)["applications"][0]["args"]
    assert args["config"]["lake"]["storage_options"] == {
        "AWS_SECRET_ACCESS_KEY": REDACTED, "AWS_ENDPOINT_URL": REDACTED, "AWS_REGION": "eu-west-1"}
    conf = config_from_args(args["config"])
    assert conf.lake.storage_options == {"AWS_REGION": "eu-west-1"}
    assert conf.model_server.arms["a"].model == "delay_model:1"
    assert config_of_sections({"lake": {"root": "x", "storage_options": REDACTED}}
                              ).lake.storage_options == {}


def test_an_override_error_does_not_print_a_credential():
    from raylake.errors import ConfigError

    secret = f"literal-{uuid.uuid4().hex}"
    for bad in ("x=[", "lake.root=[1,2]"):
        with pytest.raises(ConfigError) as err:
            compose_config([f"lake.storage_options.AWS_SECRET_ACCESS_KEY={secret}", bad])
        assert secret not in str(err.value) and REDACTED in str(err.value)


def test_urls_lose_their_credentials_but_keep_where_they_point():
    from raylake.config.redact import REDACTED, redact, redact_url

    assert redact_url("http://127.0.0.1:9000/alerts?token=abc&team=ml") == \
        f"http://127.0.0.1:9000/alerts?token={REDACTED}&team=ml"
    assert redact_url("https://bot:hunter2@hooks.local/x") == f"https://bot:{REDACTED}@hooks.local/x"
    assert redact_url("https://h/a?X-Amz-Signature=s1&b=2").endswith(f"Signature={REDACTED}&b=2")
    for kept in ("s3://bucket/lake", "http://127.0.0.1:8265", "https://h/a?page=2", "not a url"):
        assert redact_url(kept) == kept
    out = redact({"monitor": {"webhook_url": "http://h/hook?api_key=k1"}})
    assert "k1" not in str(out) and out["monitor"]["webhook_url"].startswith("http://h/hook?")
