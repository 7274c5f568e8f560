"""`raylake recsys-optimize` on the shared small recommendation lake: the distilled ranker
and the int8 MLP ranker are registered as their own versions with their offline quality,
speed and lineage; the int8 network orders candidates as the float one does and its
artifact loads with `weights_only=True`; a distilled model that loses more than 1% NDCG@20
is reported and stays a candidate."""

from __future__ import annotations

import io

import numpy as np
import pytest
from recsys_lake import recsys_lake, train_ranker, train_towers

from raylake.models.registry import ModelRegistry
from raylake.recsys import optimize as opt

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def recsys(ray_session, tmp_path_factory):
    return recsys_lake(tmp_path_factory)


@pytest.fixture(scope="module")
def models(recsys):
    """The XGBoost and MLP rankers and the towers (trained here unless another test did)."""
    train_towers(recsys)  # the XGBoost ranker first, then the towers (shared)
    train_ranker(recsys, "train=torch_recsys", "train.torch.epochs=1")
    return recsys


@pytest.fixture(scope="module")
def optimized(models):
    from raylake.recsys.jobs_optimize import recsys_optimize

    lines: list[str] = []
    out = recsys_optimize(models.config(job="recsys-optimize"), echo=lines.append,
                          speed_seconds=0.2)
    return out, lines


def test_versions_are_registered_with_metrics_and_lineage(models, optimized):
    from raylake.cli.summaries import model_summary
    from raylake.lake.runs import get_run

    out, lines = optimized
    reg = ModelRegistry(models.lake())
    teacher = reg.get("recsys_ranker")
    mlp = reg.get(opt.MLP_MODEL)
    distilled = reg.get(out["registered"]["distilled"].ref)
    quant = reg.get(out["registered"]["int8"].ref)
    assert distilled.name == opt.DISTILLED_MODEL and distilled.flavor == "xgboost"
    assert quant.name == opt.QUANTIZED_MODEL and quant.flavor == "torch_int8"
    # Lineage: the teacher version and its training set (train split); the float MLP.
    assert distilled.training["teacher"] == {"model": teacher.name, "version": teacher.version}
    assert (distilled.training["table"], distilled.training["version"]) == \
        (teacher.training["table"], teacher.training["version"])
    assert distilled.training["split"] == "train" and distilled.training["rows"] > 1000
    assert quant.training["quantized_from"] == {"model": mlp.name, "version": mlp.version}
    assert quant.training["table"] == mlp.training["table"]
    # Offline quality and speed, as metrics `raylake models show` lists.
    for mv, ref in ((distilled, teacher), (quant, mlp)):
        m = mv.metrics["offline"]
        assert 0 < m["ndcg@20"] <= 1 and 0 < m["recall@20"] <= 1
        assert m["predictions_per_second"] > 1000
        assert m["reference"] == ref.ref
        assert m["promoted"] == (m["ndcg_loss"] <= 0.01)
        assert mv.stage == ("champion" if m["promoted"] else "candidate")
        shown = "\n".join(model_summary(mv.to_dict()))
        assert "offline.ndcg@20" in shown and "offline.predictions_per_second" in shown
    # The small model is the smaller artifact; the table shows every model.
    assert distilled.size_bytes < teacher.size_bytes
    assert quant.size_bytes < mlp.size_bytes
    header = next(i for i, line in enumerate(lines) if line.startswith("model optimization"))
    table = lines[header + 2:header + 6]
    for ref in (teacher.ref, distilled.ref, mlp.ref, quant.ref):
        assert any(line.lstrip().startswith(ref + " ") for line in table), (ref, lines)
    run = get_run(models.lake(), distilled.run_id)
    roles = {i.get("role") for i in run["inputs"]}
    assert {"teacher", "training-set", "towers", "float model"} <= roles
    assert {(o["model"], o["version"]) for o in run["outputs"]} == \
        {(distilled.name, distilled.version), (quant.name, quant.version)}


def test_int8_orders_candidates_like_the_float_mlp(models, optimized):
    out, _ = optimized
    reg = ModelRegistry(models.lake())
    from raylake.models.flavors import get_flavor
    from raylake.models.spec import FeatureSpec

    assert out["verdicts"]["int8"]["rank_corr"] > 0.95
    # Loaded back from the registry, on rows of the ranker's training set.
    rows = models.lake().read("training/recsys_impressions").slice(0, 20_000)
    scores = []
    for ref in (out["registered"]["int8"].ref, opt.MLP_MODEL):
        mv, model = reg.load(ref)
        scores.append(get_flavor(mv.flavor).predict(
            model, FeatureSpec.from_dict(mv.preprocessing), rows))
    assert opt.spearman(scores[0], scores[1]) > 0.95
    assert np.abs(scores[0] - scores[1]).max() < 0.05


def test_int8_artifact_loads_without_pickle(models, optimized):
    import pickle

    import torch

    from raylake.errors import ArtifactError
    from raylake.models.flavors import get_flavor

    out, _ = optimized
    reg = ModelRegistry(models.lake())
    mv = out["registered"]["int8"]
    data = reg.store.read_artifact(mv.artifact)
    state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    assert {k for k, v in state.items() if v.dtype == torch.int8} == \
        {f"{name}.weight_int8" for name in mv.flavor_info["layers"]}
    assert not any(v.is_quantized for v in state.values())  # plain tensors only

    class Evil:
        def __reduce__(self):
            return (print, ("ran code from the artifact",))

    with pytest.raises(ArtifactError, match="weights_only"):
        get_flavor("torch_int8").load(pickle.dumps({"x": Evil()}, protocol=2),
                                     mv.flavor_info)


def test_a_distilled_model_losing_ndcg_is_not_promoted(models, optimized):
    from raylake.recsys.jobs_optimize import recsys_optimize

    lines: list[str] = []
    out = recsys_optimize(models.config(job="recsys-optimize"), echo=lines.append,
                          distill={"num_boost_round": 1, "max_depth": 1}, speed_seconds=0.05)
    v = out["verdicts"]["distilled"]
    mv = ModelRegistry(models.lake()).get(out["registered"]["distilled"].ref)
    assert v["ndcg_loss"] > 0.01 and not v["promoted"], v
    assert mv.stage == "candidate"
    assert mv.metrics["offline"]["promoted"] is False
    assert mv.metrics["offline"]["ndcg_loss"] > 0.01
    assert lines[-1].startswith("recsys-optimize:") and "not promoted" in lines[-1]
    assert any("NOT promoted" in line and mv.ref in line for line in lines), lines
