"""Weak supervision on the session Ray: the label matrix built by Ray Data equals the one
built in process, an LF that raises does not crash the job, a one-class dev set is refused,
and the end model trains on the label model's soft labels through `raylake train`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pytest

from raylake.config.loader import compose_config
from raylake.labeling.lfs import ABSTAIN, labeling_function

DATA = Path(__file__).resolve().parents[1] / "src/raylake/datasets/youtube_spam"

pytestmark = pytest.mark.slow


def _csv(pattern: str) -> pa.Table:
    opts = pcsv.ConvertOptions(column_types={"DATE": pa.string(), "label": pa.int8()})
    t = pa.concat_tables([pcsv.read_csv(f, convert_options=opts)
                          for f in sorted(DATA.glob(pattern))])
    return t.rename_columns(["comment_id", "author", "date", "text", "label"])


@pytest.fixture(scope="module")
def spam_lake(ray_session, tmp_path_factory):
    """The YouTube tables written straight to a lake (ingest is tested on its own)."""
    from raylake.lake import Lake, Storage
    from raylake.lake.commit import write_table

    root = str(tmp_path_factory.mktemp("spam") / "lake")
    lake = Lake(Storage.from_config(root))
    write_table(lake, "youtube/train", _csv("Youtube0[1-4]-*.csv"), mode="overwrite")
    write_table(lake, "youtube/test", _csv("Youtube05-*.csv"), mode="overwrite")
    return root, lake


@labeling_function(name="fragile")
def fragile(x):
    if "http" in x.text:
        raise ValueError("cannot parse links")
    return 1 if "!!" in x.text else ABSTAIN


def test_ray_matrix_equals_in_process_and_a_raising_lf_is_counted(spam_lake):
    from raylake.labeling.jobs import label_apply
    from raylake.labeling.matrix import apply_local

    root, lake = spam_lake
    cfg = compose_config([f"lake.root={root}", "labeling=youtube_spam",
                          "labeling.batch_rows=300"], job="label-apply")
    printed: list[str] = []
    out = label_apply(cfg, echo=printed.append, extra_lfs=(fragile,))
    m = out["matrix"]
    assert out["status"] == "succeeded"
    local = apply_local(out["lfset"], lake.read("youtube/train"), ["comment_id"])
    order_ray = np.argsort(m.table.column("comment_id").to_numpy(zero_copy_only=False),
                           kind="stable")
    order_local = np.argsort(local.table.column("comment_id").to_numpy(zero_copy_only=False),
                             kind="stable")
    assert np.array_equal(m.L[order_ray], local.L[order_local])
    links = sum("http" in t for t in lake.read("youtube/train").column("text").to_pylist())
    assert m.errors["fragile"] == local.errors["fragile"] == links
    text = "\n".join(map(str, printed))
    assert f"LF 'fragile' failed on {links:,} of 1,586 rows" in text
    assert "cannot parse links" in text
    stored = lake.read("labels/youtube_spam/matrix")
    assert stored.num_rows == 1586 and stored.schema.field("fragile").type == pa.int8()
    from raylake.lake.runs import get_run

    rec = get_run(lake, out["run_id"])
    assert rec["metrics"]["errors"]["fragile"] == links
    assert [lf["name"] for lf in rec["metrics"]["lf_set"]["lfs"]][-1] == "fragile"


def test_label_model_and_soft_label_training(spam_lake):
    from raylake.labeling.jobs import label_analyze, label_apply, label_features, label_model
    from raylake.lake.runs import get_run
    from raylake.train.jobs import train

    root, lake = spam_lake
    base = [f"lake.root={root}", "labeling=youtube_spam"]
    quiet = dict(echo=lambda *_: None)
    label_apply(compose_config(base, job="label-apply"), **quiet)
    analyzed = label_analyze(compose_config(base, job="label-analyze"), **quiet)
    assert analyzed["dev_accuracy"]["label_model"] > analyzed["dev_accuracy"]["majority"]
    fitted = label_model(compose_config(base, job="label-model"), **quiet)
    probs = lake.read("labels/youtube_spam/probs")
    assert {"p_ham", "p_spam", "label", "covered"} <= set(probs.column_names)
    rec = get_run(lake, fitted["run_id"])
    assert rec["metrics"]["label_model"]["kind"] == "dawid_skene"
    assert set(rec["metrics"]["label_model"]["lf_accuracy"]) == set(rec["metrics"]["lfs"])
    label_features(compose_config([*base, "labeling.end_model.dim=1024"],
                                  job="label-features"), **quiet)
    soft = lake.read("labels/youtube_spam/train_set", columns=["label"]).column("label")
    assert 0 < np.mean((soft.to_numpy() > 0.01) & (soft.to_numpy() < 0.99))  # soft, not 0/1
    out = train(compose_config([*base, "train=xgboost_youtube_spam", "train.xgboost.num_boost_round=60",
                                "train.checkpoint_every=60", "train.register=false"],
                               job="train"), **quiet)
    assert out["metrics"]["test"]["rows"] == 370
    assert out["metrics"]["test"]["accuracy"] > 0.85


def test_a_one_class_dev_set_fails_analyze_with_a_clear_message(spam_lake, capsys):
    from raylake.labeling.errors import DevSetError
    from raylake.labeling.jobs import label_analyze, label_apply
    from raylake.lake.commit import write_table

    root, lake = spam_lake
    train = lake.read("youtube/train")
    ham = train.filter(pa.compute.equal(train.column("label"), 0))
    write_table(lake, "youtube/ham_only", ham, mode="overwrite")
    base = [f"lake.root={root}", "labeling=youtube_spam"]
    label_apply(compose_config(base, job="label-apply"), echo=lambda *_: None)
    with pytest.raises(DevSetError, match=r"holds one class only \(0\)"):
        label_analyze(compose_config([*base, "labeling.dev.table=youtube/ham_only"],
                                     job="label-analyze"), echo=print)
    assert "check_out" in capsys.readouterr().out  # the label-free statistics came first
