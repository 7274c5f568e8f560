"""Model optimization of the ranker: a distilled ranker and an int8 MLP ranker, measured
against the full ranker on the same holdout, with the same candidates, in the same run.

- **Distillation**: a small XGBoost (few, shallow trees) fitted to the full ranker's
  predicted click probability (soft labels, log loss) over the ranker's own training
  split, with the ranker's feature spec, so it scores the same rows.
- **int8**: the MLP ranker (``train=torch_recsys``) with its linear layers int8 and
  dynamic activation quantization (flavor ``torch_int8``, see
  :mod:`raylake.models.flavors.torch_int8`), where this torch has an int8 engine.

Each is measured like the pipeline row of :mod:`raylake.recsys.evaluate`: the holdout
users' two-tower candidates, their ranker inputs read once from the online store, re-ranked
by each model (NDCG@20, recall@20), and its scoring speed: predictions per second scoring
500-candidate batches of those rows in-process on one thread (the model call, encoding
included; the feature lookup, the same for every model, is left out).

A model that loses more than :data:`MAX_NDCG_LOSS` of its reference's NDCG@20 (relative:
the full ranker for the distilled one, the float MLP for the int8 one) stays a candidate
and says so; otherwise it becomes the champion of its own model name (the registry's
stages: candidate, champion, archived), which leaves the full ranker's versions alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from raylake.models.spec import FeatureSpec

# Registered model names (no recsys config field: constants of this module).
DISTILLED_MODEL = "recsys_ranker_distilled"
MLP_MODEL = "recsys_ranker_mlp"  # conf/train/torch_recsys.yaml's model_name
QUANTIZED_MODEL = "recsys_ranker_mlp_int8"
# A model losing more than this share of its reference's NDCG@20 is not promoted.
MAX_NDCG_LOSS = 0.01
# The student: binary log loss on the teacher's probabilities.
DISTILL_PARAMS: dict[str, Any] = {"num_boost_round": 40, "max_depth": 4, "eta": 0.3,
                                  "min_child_weight": 5.0}
DISTILL_MAX_ROWS = 1_000_000  # a seeded sample of the train split beyond this
SPEED_BATCH = 500  # candidates per scoring call
SPEED_SECONDS = 1.5  # timed per model, in 3 turns (after one warm-up call)
K = 20


@dataclass
class Candidate:
    """One model in the comparison: its label, registered name, scorer and spec."""

    label: str
    name: str
    model: Any
    flavor: str
    spec: FeatureSpec
    ref: str | None = None  # NAME:VERSION once registered (or the one it was loaded as)
    metrics: dict[str, Any] = field(default_factory=dict)
    scores: np.ndarray | None = None

    def predictor(self, threads: int = 1) -> Callable[[pa.Table], np.ndarray]:
        """The flavor's scoring function of this model with ``threads`` threads."""
        from raylake.models.flavors import get_flavor

        return get_flavor(self.flavor).predictor(self.model, self.spec, threads)


# -- distillation ------------------------------------------------------------------


def train_rows(lake: Any, conf: Any, teacher: Any, max_rows: int = DISTILL_MAX_ROWS,
               seed: int = 0) -> tuple[pa.Table, dict[str, Any]]:
    """The teacher's training split (``training`` table and version of its registration,
    the split of ``conf.train``), sampled to ``max_rows``, and its lineage."""
    import dataclasses

    import ray

    from raylake.train.data import load_splits

    tcfg = dataclasses.replace(conf.train, table=teacher.training["table"],
                               table_version=str(teacher.training["version"]))
    split = (teacher.config.get("train") or {}).get("split") or {}
    if split.get("valid_start") and split.get("test_start"):
        tcfg = dataclasses.replace(tcfg, split=dataclasses.replace(
            tcfg.split, valid_start=str(split["valid_start"]),
            test_start=str(split["test_start"])))
    splits = load_splits(lake, tcfg)
    ds = splits.train
    total = ds.count()
    if total > max_rows:
        ds = ds.random_sample(max_rows / total, seed=seed)
    parts = [t for t in ray.get(ds.to_arrow_refs()) if t.num_rows]
    rows = pa.concat_tables(parts) if parts else pa.table({})
    lineage = {"table": splits.table, "version": splits.version, "split": "train",
               "before": splits.bounds["valid_start"], "rows": rows.num_rows,
               "rows_in_split": total, **splits.source}
    return rows, lineage


def distill(teacher: Candidate, rows: pa.Table, params: dict[str, Any] | None = None,
            threads: int = 2, seed: int = 0) -> tuple[Any, dict[str, Any]]:
    """A small Booster fitted to ``teacher``'s click probabilities on ``rows`` (soft
    labels, binary log loss), on the teacher's spec; and its fit statistics."""
    import xgboost as xgb

    p = {**DISTILL_PARAMS, **(params or {})}
    rounds = int(p.pop("num_boost_round"))
    started = time.perf_counter()
    target = np.clip(teacher.predictor(threads)(rows), 0.0, 1.0)
    spec = teacher.spec
    dtrain = xgb.QuantileDMatrix(spec.matrix(rows), label=target,
                                 feature_types=spec.feature_types(), enable_categorical=True,
                                 nthread=threads)
    params_all = {"objective": "binary:logistic", "tree_method": "hist", "nthread": threads,
                  "seed": seed, **p}
    booster = xgb.train(params_all, dtrain, num_boost_round=rounds)
    student = booster.inplace_predict(spec.matrix(rows))
    stats = {"rows": rows.num_rows, "rounds": rounds, "params": p,
             "fit_s": round(time.perf_counter() - started, 2),
             "teacher_mse": round(float(np.mean((student - target) ** 2)), 6)}
    return booster, stats


# -- measuring -----------------------------------------------------------------------


class Bench:
    """The holdout users, their two-tower candidates and the ranker rows of those
    candidates (read from the online store once), for scoring every model alike."""

    def __init__(self, lake: Any, conf: Any, scorer: Any, max_users: int | None = None) -> None:
        import torch

        from raylake.models.registry import ModelRegistry
        from raylake.recsys import evaluate, towers
        from raylake.recsys.split import holdout_start

        r = conf.recsys
        self.scorer = scorer
        start = holdout_start(lake, conf)
        imps = lake.read(r.impressions_table, columns=["ts", "user_id", "item_id", "clicked"])
        item_ids = np.sort(lake.read(r.items_table, columns=["item_id"])["item_id"].to_numpy())
        self.holdout = evaluate.holdout(imps, item_ids, start, int(max_users or r.eval_users))
        tower_mv, tower = ModelRegistry(lake).load(r.tower_model)
        self.tower_ref = tower_mv.ref
        tspec = FeatureSpec.from_dict(tower_mv.preprocessing)
        ucodes = towers.encode_ids(tspec, "user_id", self.holdout.users)
        icodes = towers.encode_ids(tspec, "item_id", self.holdout.items)
        with torch.no_grad():
            uv = tower.user_vectors(torch.tensor(ucodes)).numpy()
            iv = tower.item_vectors(torch.tensor(icodes)).numpy()
        h = self.holdout
        self.c = min(int(r.candidates), len(h.items))
        retrieved = evaluate.top_k(uv @ iv.T, h.items, self.c)
        retrieved[ucodes == 0] = h.popular[:self.c]  # a cold user gets the popular items
        self.candidates = retrieved
        self.cold = int((ucodes == 0).sum())
        started = time.perf_counter()
        flat_users = np.repeat(np.asarray(h.users, np.int64), self.c)
        self.rows = scorer.rows(flat_users, retrieved.reshape(-1))
        self.lookup_s = time.perf_counter() - started

    def scores(self, cand: Candidate, threads: int = 2) -> np.ndarray:
        """``cand``'s scores (users, candidates) of the holdout's candidates."""
        missing = [c for c in cand.spec.names if c not in self.rows.column_names]
        if missing:
            from raylake.errors import ModelError

            raise ModelError(f"{cand.ref or cand.name} reads columns {missing} that the full "
                             "ranker does not; optimize models trained on the same training "
                             "set (`raylake train experiment=recsys`).")
        s = np.asarray(cand.predictor(threads)(self.rows), np.float64)
        cand.scores = s.reshape(len(self.holdout.users), self.c)
        return cand.scores

    def quality(self, cands: list[Candidate]) -> dict[str, dict[str, float]]:
        """NDCG@20 and recall@20 of each model's re-ranking (and of the two-tower's order)."""
        from raylake.recsys import evaluate

        lists = {"two_tower": self.candidates[:, :K]}
        for cand in cands:
            s = self.scores(cand) if cand.scores is None else cand.scores
            order = np.argsort(-s, axis=1, kind="stable")
            lists[cand.label] = np.take_along_axis(self.candidates, order, axis=1)[:, :K]
        return evaluate.score(self.holdout, lists, self.c)

    def speeds(self, cands: list[Candidate], batch: int = SPEED_BATCH,
               seconds: float = SPEED_SECONDS, rounds: int = 3) -> dict[str, float]:
        """Predictions per second of each model scoring ``batch``-row tables of the holdout
        rows one call at a time on one thread (torch's and XGBoost's): ``rounds`` turns of
        ``seconds / rounds`` each, the models taking turns, the best turn of each kept (a
        burst of other work on the machine then slows one turn, not one model)."""
        import torch

        n = max(1, min(64, self.rows.num_rows // batch))
        tables = [self.rows.slice(i * batch, batch) for i in range(n)]
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            predictors = {c.label: c.predictor(1) for c in cands}
            for predict in predictors.values():
                predict(tables[0])  # warm-up
            best = dict.fromkeys(predictors, 0.0)
            for _ in range(max(1, rounds)):
                for label, predict in predictors.items():
                    best[label] = max(best[label], _rate(predict, tables, seconds / rounds))
            return best
        finally:
            torch.set_num_threads(threads)


def _rate(predict: Callable[[pa.Table], np.ndarray], tables: list[pa.Table],
          seconds: float) -> float:
    calls, rows = 0, 0
    started = time.perf_counter()
    while True:
        t = tables[calls % len(tables)]
        predict(t)
        calls += 1
        rows += t.num_rows
        elapsed = time.perf_counter() - started
        if elapsed >= seconds and calls >= 5:
            return rows / elapsed


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two score arrays (ties by order: fine for scores)."""
    ra = np.argsort(np.argsort(a.reshape(-1), kind="stable"), kind="stable").astype(np.float64)
    rb = np.argsort(np.argsort(b.reshape(-1), kind="stable"), kind="stable").astype(np.float64)
    return float(np.corrcoef(ra, rb)[0, 1])


def mean_user_spearman(a: np.ndarray, b: np.ndarray) -> float:
    """The mean over users (rows) of the rank correlation of their candidates' scores: how
    alike two models order one request's candidates."""
    ra = np.argsort(np.argsort(a, axis=1), axis=1).astype(np.float64)
    rb = np.argsort(np.argsort(b, axis=1), axis=1).astype(np.float64)
    ra -= ra.mean(axis=1, keepdims=True)
    rb -= rb.mean(axis=1, keepdims=True)
    den = np.sqrt((ra ** 2).sum(axis=1) * (rb ** 2).sum(axis=1))
    ok = den > 0
    return float(((ra * rb).sum(axis=1)[ok] / den[ok]).mean()) if ok.any() else 0.0


def ndcg_loss(reference: float, value: float) -> float:
    """The relative NDCG@20 lost against ``reference`` (0 when the reference is 0)."""
    return (reference - value) / reference if reference > 0 else 0.0


def table_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The comparison as terminal lines: model, NDCG@20, recall@20, predictions/s, size,
    and the verdict."""
    lines = [f"  {'model':<34} {'ndcg@20':>8} {'recall@20':>9} {'pred/s':>11} "
             f"{'bytes':>9}  verdict"]
    for r in rows:
        lines.append(f"  {r['model']:<34} {r['ndcg@20']:>8.4f} {r['recall@20']:>9.4f} "
                     f"{r['predictions_per_second']:>11,.0f} {r.get('size_bytes') or 0:>9,}  "
                     f"{r.get('verdict', '')}")
    return lines
