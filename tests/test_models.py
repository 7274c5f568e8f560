"""The model registry with real xgboost and torch models: round trips, stages,
refs, integrity, safe loading, concurrency, and the `raylake models` CLI."""

from __future__ import annotations

import ast
import io
import json
import os
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
import xgboost as xgb
from conftest import PYTHON, subprocess_env

from raylake.errors import (
    ArtifactError,
    ArtifactIntegrityError,
    ModelError,
    ModelNotFoundError,
    ModelStageError,
    ModelVersionNotFoundError,
    RaylakeError,
)
from raylake.models import ModelRegistry, TabularMLP, flavors, nets, parse_model_ref
from raylake.models.store import ARTIFACTS_DIR, MODELS_TABLE, ModelStore

FEATURES = [{"name": "x0", "type": "float64"}, {"name": "x1", "type": "float64"},
            {"name": "carrier", "type": "string", "encoding": "categorical"}]
TRAINING = {"table": "training/delay", "version": 3,
            "sources": [{"table": "flights", "version": 5}, {"table": "weather", "version": 2}]}


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    numeric = rng.normal(size=(300, 2)).astype(np.float32)
    codes = rng.integers(1, 5, size=(300, 1))
    label = ((numeric[:, 0] + (codes[:, 0] == 2)) > 0.5).astype(np.float32)
    return numeric, codes, label


@pytest.fixture(scope="module")
def booster(data):
    numeric, codes, label = data
    dm = xgb.DMatrix(np.hstack([numeric, codes]), label=label)
    params = {"objective": "binary:logistic", "max_depth": 3, "nthread": 1, "seed": 0}
    return xgb.train(params, dm, num_boost_round=8)


@pytest.fixture(scope="module")
def net(data):
    numeric, codes, label = data
    torch.manual_seed(0)
    model = TabularMLP(num_numeric=2, cardinalities=[4], embedding_dim=4, hidden=[16, 8])
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    x, c, y = torch.from_numpy(numeric), torch.from_numpy(codes), torch.from_numpy(label)
    for _ in range(30):
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x, c), y)
        loss.backward()
        opt.step()
    return model.eval()


def register(reg: ModelRegistry, name: str, model, flavor: str = "xgboost", **kw):
    args = dict(features=FEATURES, training=TRAINING, config={"max_depth": 3},
                metrics={"auc": 0.75}, run_id="train-1")
    args.update(kw)
    return reg.register(name, model, flavor=flavor, **args)


def test_xgboost_round_trip(lake, booster, data):
    reg = ModelRegistry(lake)
    mv = register(reg, "delay", booster, config={"eta": np.float32(0.5), "depth": 3},
                  metrics={"auc": np.float64(0.81), "logloss": 0.4}, description="first try")
    assert (mv.name, mv.version, mv.stage, mv.flavor) == ("delay", 1, "candidate", "xgboost")
    assert mv.features == FEATURES and mv.feature_names == ["x0", "x1", "carrier"]
    assert mv.training == TRAINING and mv.run_id == "train-1"
    assert mv.config == {"eta": 0.5, "depth": 3} and mv.metrics == {"auc": 0.81, "logloss": 0.4}
    assert mv.description == "first try" and mv.flavor_info["format"] == "ubj"
    assert mv.artifact.startswith(f"{ARTIFACTS_DIR}/delay/") and mv.artifact.endswith(".ubj")
    assert Path(mv.artifact_uri).is_file() and mv.artifact_uri.startswith(lake.root)
    # The metadata is a Delta table of the lake; each change one commit with its run id.
    assert MODELS_TABLE in lake.names(include_system=True)
    assert lake.table(MODELS_TABLE, system=True).history(1)[0]["raylake.run_id"] == "train-1"

    again = ModelRegistry(lake)  # a new client (a restart) sees the same registry
    got, loaded = again.load("delay", 1)
    assert got == mv and isinstance(loaded, xgb.Booster)
    dm = xgb.DMatrix(np.hstack([data[0], data[1]]))
    np.testing.assert_array_equal(loaded.predict(dm), booster.predict(dm))


def test_torch_round_trip_rebuilds_the_allowlisted_net(lake, net, data):
    reg = ModelRegistry(lake)
    prep = {"categorical": {"carrier": ["AA", "DL", "UA", "WN"]},
            "numeric": {"x0": {"mean": 0.1, "std": 1.0}, "x1": {"mean": -0.2, "std": 2.0}}}
    mv = register(reg, "delay-net", net, flavor="torch", preprocessing=prep)
    assert mv.preprocessing == prep and mv.artifact.endswith(".pt")
    assert mv.flavor_info["architecture"] == "TabularMLP"
    assert mv.flavor_info["kwargs"] == {"num_numeric": 2, "cardinalities": [4], "embedding_dim": 4,
                                        "hidden": [16, 8], "dropout": 0.1}
    _, loaded = reg.load("delay-net:latest")
    assert type(loaded) is TabularMLP and not loaded.training
    x, c = torch.from_numpy(data[0]), torch.from_numpy(data[1])
    with torch.no_grad():
        assert torch.equal(loaded(x, c), net(x, c))


def test_promotion_archival_history_and_refs(lake, booster):
    reg = ModelRegistry(lake)
    for _ in range(3):
        register(reg, "delay", booster)
    assert [v.version for v in reg.list("delay")] == [1, 2, 3]
    assert reg.get("delay").version == 3  # no champion yet: the latest
    with pytest.raises(ModelVersionNotFoundError, match="no champion.*models promote delay"):
        reg.get("delay:champion")

    assert reg.promote("delay", 1).stage == "champion"
    assert reg.get("delay").version == 1 and reg.get("delay", "champion").version == 1
    mv2 = reg.promote("delay", "2", reason="better auc")
    assert mv2.stage == "champion" and mv2.history[-1]["reason"] == "better auc"
    stages = {v.version: v.stage for v in reg.list("delay")}
    assert stages == {1: "archived", 2: "champion", 3: "candidate"}
    history = reg.get("delay:1").history
    assert [(h["previous_stage"], h["stage"]) for h in history] == [
        (None, "candidate"), ("candidate", "champion"), ("champion", "archived")]
    assert history[-1]["reason"] == "replaced by version 2"

    # Promoting the champion again changes nothing: no new commit.
    version = lake.version(MODELS_TABLE, system=True)
    assert reg.promote("delay", 2).stage == "champion"
    assert lake.version(MODELS_TABLE, system=True) == version

    mv, _ = reg.load("delay:champion")
    assert mv.version == 2
    assert reg.promote("delay", 2, "archived").stage == "archived"
    assert reg.get("delay").version == 3  # no champion any more: the latest again
    assert reg.get("delay", "latest").version == 3
    assert reg.promote("delay:1").stage == "champion"  # a NAME:VERSION ref
    assert parse_model_ref("delay") == ("delay", None)
    assert parse_model_ref("delay:7") == ("delay", 7)
    assert parse_model_ref(" delay:Champion ") == ("delay", "champion")
    assert [v.name for v in reg.list()] == ["delay"] * 3


def test_errors_name_the_bad_value_and_the_fix(lake, booster):
    reg = ModelRegistry(lake)
    with pytest.raises(ModelNotFoundError, match="No model 'delay'.*none"):
        reg.get("delay")
    register(reg, "delay", booster)
    with pytest.raises(ModelNotFoundError, match="No model 'dealy'.*Did you mean 'delay'"):
        reg.get("dealy")
    with pytest.raises(ModelVersionNotFoundError, match=r"no version 5; its versions are 1 \(candidate\)"):
        reg.load("delay", 5)
    with pytest.raises(ModelVersionNotFoundError, match="'lastest'.*Did you mean 'latest'"):
        reg.get("delay:lastest")
    with pytest.raises(ModelStageError, match="'champ'.*Did you mean 'champion'"):
        reg.promote("delay", 1, "champ")
    with pytest.raises(ModelStageError, match="cannot go back to candidate"):
        reg.promote("delay", 1, "candidate")
    with pytest.raises(ModelVersionNotFoundError, match="no version 9"):
        reg.promote("delay", 9)
    for bad in ("../x", "a/b", "a:b:c", "", "has space"):
        with pytest.raises(ModelError):
            register(reg, bad, booster)
    with pytest.raises(ModelError, match="nothing after ':'"):
        reg.get("delay:")
    with pytest.raises(ModelError, match="flavor 'xgb'.*Did you mean 'xgboost'"):
        register(reg, "delay", booster, flavor="xgb")
    with pytest.raises(ModelError, match="needs a name and a type"):
        register(reg, "delay", booster, features=[{"name": "x0"}])
    with pytest.raises(ModelError, match="more than once"):
        register(reg, "delay", booster, features=[("x0", "float64"), ("x0", "float64")])
    with pytest.raises(ModelError, match="training set's lake table and version"):
        register(reg, "delay", booster, training={"table": "t"})
    with pytest.raises(ModelError, match="config of model 'delay' cannot be stored as JSON"):
        register(reg, "delay", booster, config={"fn": print})
    with pytest.raises(ModelError, match="xgboost.Booster"):
        register(reg, "delay", "not a model")
    assert [v.version for v in reg.list("delay")] == [1]  # nothing half-registered


def test_changed_or_missing_artifact_is_refused(lake, booster):
    reg = ModelRegistry(lake)
    mv = register(reg, "delay", booster)
    path = Path(mv.artifact_uri)
    original = path.read_bytes()
    damaged = bytearray(original)
    damaged[len(damaged) // 2] ^= 0xFF
    path.write_bytes(bytes(damaged))
    with pytest.raises(ArtifactIntegrityError, match="does not match the registry.*from run train-1"):
        reg.load("delay")
    path.unlink()
    with pytest.raises(ArtifactError, match="is missing"):
        reg.load("delay")
    path.write_bytes(original)
    assert reg.load("delay")[0].version == 1


class _RunsShell:
    """Pickled, this calls os.system on load: what weights_only must refuse."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_torch_artifacts_load_with_weights_only(lake, net, tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    buf = io.BytesIO()
    torch.save({**net.state_dict(), "payload": _RunsShell(marker)}, buf)
    evil = buf.getvalue()
    info = {"architecture": "TabularMLP", "kwargs": net.architecture()}
    with pytest.raises(ArtifactError, match="weights_only=True"):
        flavors.get_flavor("torch").load(evil, info)
    assert not marker.exists()

    # Through the registry: the hash matches (the bytes were registered as
    # they are), and loading still refuses them and runs nothing.
    torch_flavor = flavors.get_flavor("torch")
    real_save = torch_flavor.save
    monkeypatch.setattr(torch_flavor, "save",
                        lambda m: flavors.SavedModel(evil, "pt", real_save(m).info))
    reg = ModelRegistry(lake)
    register(reg, "evil", net, flavor="torch")
    with pytest.raises(ArtifactError, match="refused by torch.load"):
        reg.load("evil")
    assert not marker.exists()

    with pytest.raises(ArtifactError, match="Unknown torch architecture 'os.system'"):
        torch_flavor.load(real_save(net).data, {"architecture": "os.system", "kwargs": {}})
    with pytest.raises(ArtifactError, match="does not fit TabularMLP"):
        torch_flavor.load(real_save(net).data,
                          {"architecture": "TabularMLP", "kwargs": {"num_numeric": 3, "cardinalities": []}})


def test_only_allowlisted_networks_register(lake, net):
    class Subclass(TabularMLP):
        pass

    for model in (torch.nn.Linear(2, 1), Subclass(2, [4])):
        with pytest.raises(ModelError, match="ARCHITECTURES"):
            register(ModelRegistry(lake), "odd", model, flavor="torch")
    assert set(nets.ARCHITECTURES) == {"TabularMLP", "TwoTower"}


class LinearFlavor(flavors.Flavor):
    """A third flavor, defined here: a logistic model as a numpy vector of weights (bias
    last), saved with np.save(allow_pickle=False)."""

    name = "np_linear"
    extension = "npy"

    def save(self, model):
        if not isinstance(model, np.ndarray) or model.ndim != 1:
            raise ModelError(f"A np_linear model is a 1-d weight vector, got {type(model).__name__}.")
        buf = io.BytesIO()
        np.save(buf, model.astype(np.float64), allow_pickle=False)
        return flavors.SavedModel(buf.getvalue(), self.extension, {"weights": len(model)})

    def load(self, data, info):
        w = np.load(io.BytesIO(data), allow_pickle=False)
        if w.shape != (info["weights"],):
            raise ArtifactError(f"np_linear artifact has shape {w.shape}, not ({info['weights']},).")
        return w

    def predict(self, model, spec, table):
        x = np.nan_to_num(spec.matrix(table).astype(np.float64))
        return 1 / (1 + np.exp(-(x @ model[:-1] + model[-1])))


def test_flavor_registry_finds_builtins_and_a_registered_flavor(lake):
    import pyarrow as pa

    from raylake.models.spec import FeatureSpec

    assert flavors.flavor_names()[:2] == ("xgboost", "torch")
    assert flavors.get_flavor("xgboost").extension == "ubj"
    with pytest.raises(ModelError, match=r"flavor 'xgb'\. Did you mean 'xgboost'\? Use one of: "
                                         r"xgboost, torch"):
        flavors.get_flavor("xgb")
    with pytest.raises(ModelError, match="Flavor instance"):
        flavors.register_flavor(LinearFlavor)  # the class, not an instance
    with pytest.raises(ModelError, match="'xgboost' is already registered"):
        flavors.register_flavor(type("Other", (LinearFlavor,), {"name": "xgboost"})())

    linear = flavors.register_flavor(LinearFlavor())
    try:
        assert flavors.get_flavor("np_linear") is linear
        # Every registered flavor is named, the built-ins first (their list grows).
        with pytest.raises(ModelError, match=r"Use one of: xgboost, torch, (\w+, )*np_linear\."):
            flavors.get_flavor("linear")
        spec = FeatureSpec(["x0", "x1"], [], {}, "y")
        table = pa.table({"x0": [0.5, -1.0, None], "x1": [2.0, 0.0, 1.0]})
        weights = np.array([1.5, -0.5, 0.25])
        # Through the model registry: stored as .npy, loaded and scored by name.
        reg = ModelRegistry(lake)
        mv = register(reg, "lin", weights, flavor="np_linear", preprocessing=spec.to_dict(),
                      features=[("x0", "float64"), ("x1", "float64")])
        assert mv.flavor == "np_linear" and mv.artifact_uri.endswith(".npy")
        got, model = reg.load("lin")
        np.testing.assert_array_equal(model, weights)
        flavor = flavors.get_flavor(got.flavor)
        want = 1 / (1 + np.exp(-np.array([0.75 - 1 + 0.25, -1.5 + 0.25, -0.5 + 0.25])))
        np.testing.assert_allclose(flavor.predict(model, spec, table), want)
        score = flavor.predictor(model, FeatureSpec.from_dict(got.preprocessing), threads=2)
        np.testing.assert_allclose(score(table), want)
        with pytest.raises(ModelError, match="1-d weight vector"):
            register(reg, "lin", "not weights", flavor="np_linear")
    finally:
        flavors.unregister_flavor("np_linear")
    assert "np_linear" not in flavors.flavor_names()


def _race_reads(monkeypatch, parties: int) -> list[int]:
    """Make the first read of each thread wait for the others: all of them
    then compute their change from the same registry state."""
    barrier = threading.Barrier(parties, timeout=60)
    waited: set[int] = set()
    reads: list[int] = []
    real = ModelStore._read

    def read(self, dtab):
        rows = real(self, dtab)
        reads.append(dtab.version())
        if threading.get_ident() not in waited:
            waited.add(threading.get_ident())
            barrier.wait()
        return rows

    monkeypatch.setattr(ModelStore, "_read", read)
    return reads


def _in_threads(*calls):
    results, errors = [None] * len(calls), []

    def run(i, fn):
        try:
            results[i] = fn()
        except BaseException as exc:  # surfaced in the test below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i, fn)) for i, fn in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    return results


def test_concurrent_registrations_get_distinct_versions(lake, booster, net, monkeypatch):
    reg = ModelRegistry(lake)
    reads = _race_reads(monkeypatch, 2)
    a, b = _in_threads(lambda: register(reg, "delay", booster),
                       lambda: register(reg, "delay", net, flavor="torch"))
    assert {a.version, b.version} == {1, 2}
    assert len(reads) > 4  # the loser's commit conflicted and it read again
    monkeypatch.undo()
    assert {v.flavor for v in reg.list("delay")} == {"xgboost", "torch"}
    for v in (1, 2):
        reg.load("delay", v)


def test_concurrent_promotions_leave_one_champion(lake, booster, monkeypatch):
    reg = ModelRegistry(lake)
    for _ in range(2):
        register(reg, "delay", booster)
    _race_reads(monkeypatch, 2)
    _in_threads(lambda: reg.promote("delay", 1), lambda: reg.promote("delay", 2))
    monkeypatch.undo()
    stages = sorted(v.stage for v in reg.list("delay"))
    assert stages == ["archived", "champion"]
    champion = reg.get("delay", "champion")
    assert champion.history[-1]["stage"] == "champion"


def test_tabular_mlp_inputs_and_unknown_codes():
    torch.manual_seed(0)
    model = TabularMLP(num_numeric=1, cardinalities=[3, 5], hidden=[4]).eval()
    numeric = torch.randn(6, 1)
    codes = torch.tensor([[1, 2], [3, 5], [0, 0], [9, -1], [2, 7], [0, 5]])
    out = model(numeric, codes)
    assert out.shape == (6,) and out.dtype == torch.float32
    # Codes outside the vocabulary read as unknown (0).
    unknown = codes.clone()
    unknown[3] = torch.tensor([0, 0])
    unknown[4, 1] = 0
    assert torch.equal(out, model(numeric, unknown))
    assert TabularMLP(0, [2])(None, torch.tensor([[1], [2]])).shape == (2,)
    assert TabularMLP(2, [])(torch.randn(3, 2), None).shape == (3,)
    with pytest.raises(ModelError, match=r"shape \[N, 2\]"):
        model(numeric, codes[:, :1])
    for kwargs in ({"num_numeric": 0, "cardinalities": []}, {"num_numeric": -1, "cardinalities": [2]},
                   {"num_numeric": 1, "cardinalities": [0]}, {"num_numeric": 1, "cardinalities": [2],
                                                             "dropout": 1.5}):
        with pytest.raises(ModelError):
            TabularMLP(**kwargs)
    assert issubclass(ModelError, RaylakeError)


def test_cli_list_show_promote(lake, booster):
    reg = ModelRegistry(lake)
    register(reg, "delay", booster, metrics={"auc": 0.8123456})
    register(reg, "delay", booster)
    env = subprocess_env()

    def cli(*args: str, ok: bool = True) -> subprocess.CompletedProcess:
        res = subprocess.run([PYTHON, "-m", "raylake", "models", *args, f"lake.root={lake.root}"],
                             capture_output=True, text=True, env=env, timeout=120)
        assert (res.returncode == 0) == ok, res.stderr
        return res

    out = cli("promote", "delay", "1").stdout
    assert "delay:1: candidate -> champion" in out
    out = cli("promote", "delay", "2", "--reason", "retrained").stdout
    assert "delay:2: candidate -> champion" in out and "delay:1: champion -> archived" in out
    listing = cli("list").stdout.splitlines()
    assert listing[0].split()[:4] == ["name", "version", "stage", "flavor"]
    assert listing[1].split()[:3] == ["delay", "1", "archived"] and "auc=0.8123" in listing[1]
    assert listing[2].split()[:3] == ["delay", "2", "champion"]
    shown = json.loads(cli("show", "delay:1", "--json").stdout)
    assert shown["training"] == TRAINING and shown["features"] == FEATURES
    assert [h["stage"] for h in shown["history"]] == ["candidate", "champion", "archived"]
    assert json.loads(cli("show", "delay", "--json").stdout)["version"] == 2  # the champion
    assert cli("show", "delay").stdout.startswith("delay:2  stage champion")
    bad = cli("promote", "delay", "2", "--stage", "prod", ok=False)
    assert bad.returncode == 2 and "error: Cannot move a model version to stage 'prod'" in bad.stderr
    assert "Traceback" not in bad.stderr
    missing = cli("show", "dealy:3", ok=False)
    assert "No model 'dealy'" in missing.stderr and "Did you mean 'delay'" in missing.stderr


def test_models_package_layers_and_cheap_import():
    src = Path(__file__).resolve().parents[1] / "src" / "raylake" / "models"
    for path in src.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            mods = ([a.name for a in node.names] if isinstance(node, ast.Import)
                    else [node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
            for mod in mods:
                assert mod != "pickle" and not mod.startswith(("raylake.features", "raylake.ingest",
                                                                "raylake.quality")), (path, mod)
    code = "import sys, raylake.models; print('torch' in sys.modules, 'xgboost' in sys.modules)"
    out = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True,
                         env=subprocess_env(), check=True)
    assert out.stdout.split() == ["False", "False"]
