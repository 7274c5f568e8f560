"""The synthesizers on real data (palmerpenguins, CC0): the CTGAN paper's transformer,
the Gaussian copula, TVAE and CTGAN. Small data and few epochs, one torch thread."""

from __future__ import annotations

import io
import json
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from raylake.errors import SynthError
from raylake.synth import (
    DataTransformer,
    Synthesizer,
    SynthWarning,
    make_synthesizer,
    memorisation_warning,
)
from raylake.synth.transformer import fit_mixture

KINDS = ["copula", "tvae", "ctgan"]
FAST = {"copula": {}, "tvae": {"epochs": 30, "batch_size": 100},
        "ctgan": {"epochs": 3, "batch_size": 100}}


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def penguins() -> pd.DataFrame:
    from palmerpenguins import load_penguins

    return load_penguins()


@pytest.fixture(scope="module")
def fitted(penguins) -> dict[str, Synthesizer]:
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SynthWarning)
        for kind in KINDS:
            synth = make_synthesizer(kind, **FAST[kind])
            synth.fit(penguins, seed=0)
            out[kind] = synth
    return out


def _mixed_frame(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 50, n)
    nullable = pd.array(np.where(rng.random(n) < 0.1, None, counts), dtype="Int64")
    when = pd.Timestamp("2024-01-01", tz="Europe/Paris") + pd.to_timedelta(
        rng.integers(0, 86_400 * 30, n), unit="s")
    return pd.DataFrame({
        "amount": np.round(rng.lognormal(3, 1, n), 2),
        "count": counts.astype("int64"),
        "nullable": nullable,
        "flag": rng.random(n) < 0.3,
        "grade": pd.Categorical(rng.choice(["low", "mid", "high"], n),
                                categories=["low", "mid", "high"], ordered=True),
        "when": when,
        "wait": pd.to_timedelta(rng.integers(0, 3600, n), unit="s"),
        "site": "ams",  # constant: kept constant
    })


# ---- the transformer ---------------------------------------------------------------


def test_transformer_round_trip_on_penguins(penguins):
    tr = DataTransformer.fit(penguins, seed=0)
    data = tr.transform(penguins, seed=0)
    assert data.dtype == np.float32
    assert data.shape == (len(penguins), tr.output_dim)
    assert sum(s.dim for s in tr.spans) == tr.output_dim
    assert tr.discrete_columns == ["species", "island", "sex"]
    # continuous: an offset (tanh) and its mode (softmax); nulls: an indicator of two
    spans = {(s.column, s.role): s for s in tr.spans}
    assert spans[("bill_length_mm", "value")].kind == "tanh"
    assert spans[("bill_length_mm", "null")].dim == 2
    assert ("year", "null") not in spans  # no nulls in year
    assert spans[("species", "category")].dim == 3
    assert 1 <= spans[("body_mass_g", "mode")].dim <= 10
    offsets = np.cumsum([0] + [s.dim for s in tr.spans])
    for s, at in zip(tr.spans, offsets):
        block = data[:, at:at + s.dim]
        if s.kind == "tanh":
            assert np.abs(block).max() <= 0.99
        else:
            np.testing.assert_array_equal(block.sum(1), 1.0)  # one-hot
    back = tr.inverse(data)
    assert list(back.columns) == list(penguins.columns)
    assert back.dtypes.equals(penguins.dtypes)
    for col in ("species", "island", "sex", "year"):
        pd.testing.assert_series_equal(back[col], penguins[col])
    for col in ("bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"):
        assert (back[col].isna() == penguins[col].isna()).all()
        close = np.isclose(back[col], penguins[col], rtol=1e-5) | penguins[col].isna()
        # a value whose mode is drawn in a far tail is clipped to 4 sd: rare
        assert close.mean() > 0.98, col
        assert back[col].min() >= penguins[col].min()
        assert back[col].max() <= penguins[col].max()


def test_transformer_json_round_trip_and_seeded_modes(penguins):
    tr = DataTransformer.fit(penguins, seed=0)
    text = json.dumps(tr.to_json())  # JSON-safe: no pickle, no numpy scalars
    again = DataTransformer.from_json(json.loads(text))
    assert again.spans == tr.spans
    np.testing.assert_array_equal(again.transform(penguins, seed=3),
                                  tr.transform(penguins, seed=3))
    # modes are drawn from their posterior: another seed may draw others
    assert not np.array_equal(tr.transform(penguins, seed=3), tr.transform(penguins, seed=4))


def test_transformer_dtypes_times_nulls_and_constant():
    df = _mixed_frame()
    tr = DataTransformer.fit(df, seed=0)
    kinds = {c.name: c.kind for c in tr.columns}
    assert kinds == {"amount": "continuous", "count": "continuous", "nullable": "continuous",
                     "flag": "discrete", "grade": "discrete", "when": "continuous",
                     "wait": "continuous", "site": "discrete"}
    back = tr.inverse(tr.transform(df))
    assert back.dtypes.equals(df.dtypes)
    assert back["grade"].cat.ordered and list(back["grade"].cat.categories) == [
        "low", "mid", "high"]
    assert (back["site"] == "ams").all()
    pd.testing.assert_series_equal(back["flag"], df["flag"])
    assert (back["nullable"].isna() == df["nullable"].isna()).all()
    assert str(back["when"].dt.tz) == "Europe/Paris"
    for col in ("count", "nullable", "when", "wait"):
        ok = (back[col] == df[col]).fillna(True)
        assert ok.mean() > 0.97, col
    # ints come back whole, and inside the bounds seen
    assert (back["count"] == back["count"].round()).all()
    assert back["count"].between(df["count"].min(), df["count"].max()).all()


def test_transformer_treats_named_columns_as_discrete(penguins):
    tr = DataTransformer.fit(penguins, discrete=["year"])
    assert "year" in tr.discrete_columns
    assert tr.column("year").categories == [2007, 2008, 2009]
    back = tr.inverse(tr.transform(penguins))
    pd.testing.assert_series_equal(back["year"], penguins["year"])


def test_mixture_finds_the_modes():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(-5, 1, 3000), rng.normal(10, 2, 7000)])
    mix = fit_mixture(x, 10)
    kept = mix.weights > 0.005
    assert kept.sum() < 10  # the Dirichlet process prior prunes modes (as scikit-learn's)
    low = kept & (mix.means < 2)
    assert mix.weights[low].sum() == pytest.approx(0.3, abs=0.02)
    assert np.average(mix.means[low], weights=mix.weights[low]) == pytest.approx(-5, abs=0.2)
    high = kept & ~low
    assert np.average(mix.means[high], weights=mix.weights[high]) == pytest.approx(10, abs=0.3)
    assert mix.stds[low].max() == pytest.approx(1.0, abs=0.3)


# ---- bad input ---------------------------------------------------------------------


def test_bad_tables_are_refused_with_the_fix(penguins):
    with pytest.raises(SynthError, match="no rows"):
        DataTransformer.fit(penguins.iloc[:0])
    df = penguins.assign(notes=None)
    with pytest.raises(SynthError, match=r"'notes' is null in all 344 rows.*drop it"):
        make_synthesizer("copula").fit(df)
    with pytest.raises(SynthError, match=r"'spieces'.*Did you mean 'species'"):
        DataTransformer.fit(penguins, discrete=["spieces"])
    with pytest.raises(SynthError, match="DataFrame"):
        DataTransformer.fit(penguins.to_numpy())  # type: ignore[arg-type]


def test_unknown_kind_parameter_and_bad_values():
    with pytest.raises(SynthError, match=r"'tvea'.*Did you mean 'tvae'.*copula, tvae, ctgan"):
        make_synthesizer("tvea")
    with pytest.raises(SynthError, match=r"no parameter 'epoch'.*Did you mean 'epochs'"):
        make_synthesizer("tvae", epoch=3)
    with pytest.raises(SynthError, match=r"epochs=0 must be an integer of at least 1"):
        make_synthesizer("tvae", epochs=0)
    with pytest.raises(SynthError, match=r"batch_size=501 must be a multiple of pac=10"):
        make_synthesizer("ctgan", batch_size=501)
    with pytest.raises(SynthError, match="not fitted"):
        make_synthesizer("copula").sample(5, seed=0)


def test_a_category_with_one_row_is_kept_with_a_warning(penguins):
    df = penguins.copy()
    df.loc[0, "island"] = "Anvers"
    with pytest.warns(SynthWarning, match=r"'island': 1 category has a single row \(Anvers\)"):
        tr = DataTransformer.fit(df)
    assert "Anvers" in tr.column("island").categories


@pytest.mark.parametrize("kind", KINDS)
def test_memorisation_warning_on_20_rows(penguins, kind):
    assert memorisation_warning(5000) is None
    small = penguins.dropna().iloc[:20]
    synth = make_synthesizer(kind, **FAST[kind])
    with pytest.warns(SynthWarning, match="20 rows x 8 columns.*memorise"):
        synth.fit(small)
    assert any("memorise" in w for w in synth.warnings)
    _, meta = synth.state()
    assert any("memorise" in w for w in meta["warnings"])


@pytest.mark.parametrize("kind", KINDS)
def test_conditions_on_unknown_values_and_columns(fitted, kind):
    synth = fitted[kind]
    with pytest.raises(SynthError, match=r"species='Emperor'.*never seen.*'Adelie'"):
        synth.sample(10, seed=0, conditions={"species": "Emperor"})
    with pytest.raises(SynthError, match=r"'body_mass_g'.*continuous.*discrete=\["):
        synth.sample(10, seed=0, conditions={"body_mass_g": 4000.0})
    with pytest.raises(SynthError, match=r"'specie'.*Did you mean 'species'"):
        synth.sample(10, seed=0, conditions={"specie": "Adelie"})
    with pytest.raises(SynthError, match="rows=-1"):
        synth.sample(-1, seed=0)


def test_a_condition_the_model_cannot_meet_says_what_to_do(fitted, monkeypatch):
    synth = fitted["copula"]
    real = synth._sample_raw
    species = synth.transformer.columns.index(synth.transformer.column("species"))

    def never_chinstrap(n, seed, conds):  # a model that lost a category
        raw = real(n, seed, [])
        raw[:, species] = 0  # Adelie
        return raw

    monkeypatch.setattr(synth, "_sample_raw", never_chinstrap)
    with pytest.raises(SynthError, match=r"Only 0 of 1,000 rows with species='Chinstrap' "
                                         r"in 100,000 drawn.*fit a ctgan synthesizer"):
        synth.sample(1000, seed=0, conditions={"species": "Chinstrap"})


# ---- every kind ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_samples_have_the_tables_shape(fitted, penguins, kind):
    rows = fitted[kind].sample(500, seed=1)
    assert len(rows) == 500
    assert list(rows.columns) == list(penguins.columns)
    assert rows.dtypes.equals(penguins.dtypes)
    for col in ("species", "island", "sex"):
        assert set(rows[col].dropna()) <= set(penguins[col].dropna())
    for col in ("bill_length_mm", "flipper_length_mm", "body_mass_g", "year"):
        assert rows[col].min() >= penguins[col].min()
        assert rows[col].max() <= penguins[col].max()
    assert (rows["year"] % 1 == 0).all()
    assert fitted[kind].sample(0, seed=1).columns.tolist() == list(penguins.columns)


@pytest.mark.parametrize("kind", KINDS)
def test_same_seed_same_rows(fitted, kind):
    synth = fitted[kind]
    a = synth.sample(300, seed=7)
    pd.testing.assert_frame_equal(a, synth.sample(300, seed=7))
    assert not a.equals(synth.sample(300, seed=8))
    state = torch.get_rng_state()
    synth.sample(10, seed=1)
    assert torch.equal(state, torch.get_rng_state())  # sampling leaves torch's RNG alone


@pytest.mark.parametrize("kind", KINDS)
def test_state_round_trip_samples_the_same_rows(fitted, kind):
    synth = fitted[kind]
    tensors, meta = synth.state()
    buf = io.BytesIO()
    torch.save(tensors, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=True)
    meta = json.loads(json.dumps(meta))
    again = Synthesizer.from_state(loaded, meta)
    assert type(again) is type(synth) and again.kind == kind
    pd.testing.assert_frame_equal(again.sample(200, seed=3), synth.sample(200, seed=3))
    pd.testing.assert_frame_equal(
        again.sample(50, seed=3, conditions={"island": "Dream"}),
        synth.sample(50, seed=3, conditions={"island": "Dream"}))


@pytest.mark.parametrize("kind", KINDS)
def test_conditions_are_honoured(fitted, kind):
    rows = fitted[kind].sample(200, seed=2, conditions={"species": "Gentoo"})
    assert len(rows) == 200
    assert (rows["species"] == "Gentoo").all()
    both = fitted[kind].sample(50, seed=2, conditions={"species": "Adelie", "sex": "male"})
    assert len(both) == 50
    assert ((both["species"] == "Adelie") & (both["sex"] == "male")).all()


def test_same_seed_same_fit(penguins):
    a, b = (make_synthesizer("ctgan", epochs=2, batch_size=100) for _ in range(2))
    a.fit(penguins, seed=5)
    b.fit(penguins, seed=5)
    pd.testing.assert_frame_equal(a.sample(100, seed=0), b.sample(100, seed=0))


@pytest.mark.parametrize("kind", ["tvae", "ctgan"])
def test_resume_from_an_epoch_state_trains_the_same_weights(penguins, kind):
    params = {"epochs": 4, "batch_size": 100}
    full = make_synthesizer(kind, **params)
    data = full.prepare(penguins, seed=0)
    end = full.train_loop(data, seed=0)
    saved: dict[int, bytes] = {}

    def keep(epoch, losses, state):
        assert set(losses) and all(np.isfinite(v) for v in losses.values())
        buf = io.BytesIO()
        torch.save(state, buf)
        saved[epoch] = buf.getvalue()

    part = make_synthesizer(kind, **params)
    part.transformer = full.transformer
    part.train_loop(data, seed=0, on_epoch=keep)
    assert sorted(saved) == [1, 2, 3, 4]
    start = torch.load(io.BytesIO(saved[2]), weights_only=True)
    resumed = part.train_loop(data, seed=0, start=start)
    assert resumed["epoch"] == 4
    key = "model" if kind == "tvae" else "generator"
    for name, value in end[key].items():
        torch.testing.assert_close(resumed[key][name], value, msg=name)
    short = make_synthesizer(kind, epochs=4)
    short.transformer = full.transformer
    with pytest.raises(SynthError, match="past epochs=4"):
        short.train_loop(data, start={**start, "epoch": 9})


def test_wrap_hook_sees_each_network(penguins):
    seen = []
    synth = make_synthesizer("ctgan", epochs=1, batch_size=100)
    data = synth.prepare(penguins)
    synth.train_loop(data, wrap=lambda m: seen.append(type(m).__name__) or m)
    assert seen == ["_Generator", "_Discriminator"]


def test_ctgan_training_by_sampling_draws_matching_rows(penguins):
    from raylake.synth.ctgan import CondSampler

    tr = DataTransformer.fit(penguins)
    enc = torch.from_numpy(tr.transform(penguins))
    sampler = CondSampler(tr, enc, log_frequency=True)
    assert sampler.n_cols == 3 and sampler.dim == 3 + 3 + 3  # sex: 2 values and null
    torch.manual_seed(0)
    g = sampler.draw(5000, sampler.train_cum)
    rows = sampler.rows(g)
    hot = enc[rows][torch.arange(len(g)), sampler.out_pos[g]]
    assert bool((hot == 1).all())  # every drawn row has the asked-for category
    # columns are picked uniformly, categories by log frequency: the null sex (11 rows)
    # is asked for far more often than its 3% share of rows
    null_sex = sampler.dim - 1
    assert (g == null_sex).float().mean() > 0.05
    real = sampler.draw(20000, sampler.real_cum)
    adelie = int(sampler.col_off[0])
    share = float((real == adelie).float().mean()) * 3  # a third of draws are species
    assert share == pytest.approx((penguins["species"] == "Adelie").mean(), abs=0.03)


def test_copula_keeps_correlations(penguins):
    synth = make_synthesizer("copula")
    synth.fit(penguins, seed=0)
    rows = synth.sample(5000, seed=0)
    cols = ["bill_length_mm", "flipper_length_mm", "body_mass_g"]
    # the copula keeps rank correlations (monotone maps of correlated normal scores)
    real = penguins[cols].corr("spearman").to_numpy()
    syn = rows[cols].corr("spearman").to_numpy()
    assert np.abs(real - syn).max() < 0.05
    shares = rows["species"].value_counts(normalize=True)
    assert shares["Adelie"] == pytest.approx((penguins["species"] == "Adelie").mean(),
                                             abs=0.03)


def _marginal_gap(real: pd.DataFrame, syn: pd.DataFrame) -> float:
    """Mean Kolmogorov-Smirnov statistic over the numeric columns plus the mean total
    variation distance over the categorical ones."""
    from scipy.stats import ks_2samp

    gaps = []
    for col in real.columns:
        a, b = real[col].dropna(), syn[col].dropna()
        if pd.api.types.is_numeric_dtype(real[col]):
            gaps.append(ks_2samp(a, b).statistic)
        else:
            p = a.value_counts(normalize=True)
            q = b.value_counts(normalize=True).reindex(p.index, fill_value=0)
            gaps.append(0.5 * float(np.abs(p - q).sum()))
    return float(np.mean(gaps))


@pytest.mark.slow
def test_tvae_learns_the_penguins_marginals(penguins):
    untrained = make_synthesizer("tvae", epochs=1, batch_size=100)
    untrained.fit(penguins, seed=0)
    trained = make_synthesizer("tvae", epochs=80, batch_size=100)
    stats = trained.fit(penguins, seed=0)
    assert stats["epochs"] == 80 and stats["fit_s"] > 0
    before = _marginal_gap(penguins, untrained.sample(2000, seed=0))
    after = _marginal_gap(penguins, trained.sample(2000, seed=0))
    assert after < 0.15 and after < before * 0.6, (before, after)


@pytest.mark.slow
def test_ctgan_learns_the_species_island_pairs(penguins):
    def gentoo_on_biscoe(epochs):
        synth = make_synthesizer("ctgan", epochs=epochs, batch_size=50)
        synth.fit(penguins, seed=0)
        rows = synth.sample(2000, seed=0)
        gentoo = rows[rows["species"] == "Gentoo"]
        return (gentoo["island"] == "Biscoe").mean(), _marginal_gap(penguins, rows)

    before, _ = gentoo_on_biscoe(1)
    after, gap = gentoo_on_biscoe(150)
    # Gentoo live on Biscoe only: the conditional generator learns much of that
    assert after > before + 0.2 and after > 0.55, (before, after)
    assert gap < 0.2
