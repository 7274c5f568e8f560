"""On-demand (request-time) features: the same function offline and online."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from raylake.config.schema import (
    EntityConfig,
    FeatureConfig,
    FeaturesConfig,
    FeatureViewConfig,
    OnDemandFeatureViewConfig,
)
from raylake.errors import ConfigError, TransformError
from raylake.features.definitions import check_against_lake, resolve
from raylake.features.offline import get_historical_features
from raylake.features.online import open_store
from raylake.features.online.lookup import get_online_features
from raylake.features.online.materialize import materialize
from raylake.lake.commit import write_table

T0 = dt.datetime(2013, 1, 1, tzinfo=dt.timezone.utc)
F = FeatureConfig


def definitions(function: str = "raylake.features.transforms:weather_derived") -> FeaturesConfig:
    return FeaturesConfig(
        name="w",
        entities={"airport": EntityConfig(join_keys=["origin"])},
        feature_views={"weather": FeatureViewConfig(
            source="wx", entities=["airport"], timestamp_field="ts", ttl="3h",
            features={"temp": F("float64"), "dewp": F("float64"), "visib": F("float64")})},
        on_demand_feature_views={
            "weather_derived": OnDemandFeatureViewConfig(
                function=function, sources=["weather"],
                features={"temp_dewp_spread": F("float64"), "low_visibility": F("bool")}),
            "departure_time": OnDemandFeatureViewConfig(
                function="raylake.features.transforms:departure_time",
                request={"sched_dep_time": "int16"},
                features={"dep_minute_of_day": F("int16"), "evening": F("bool")}),
        },
        feature_services={"svc": ["weather:temp", "weather_derived", "departure_time"]},
    )


def weather(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = 600
    return pd.DataFrame({
        "origin": rng.choice(["EWR", "JFK", "LGA"], n),
        "ts": T0 + pd.to_timedelta(rng.integers(0, 48 * 60, n), unit="min"),
        "temp": np.where(rng.random(n) < 0.1, np.nan, rng.normal(40, 10, n)),
        "dewp": rng.normal(30, 10, n),
        "visib": rng.choice([0.5, 2.0, 10.0], n),
    })


def test_offline_adds_derived_and_request_features_and_hides_inputs(ray_session, lake):
    wx = weather()
    write_table(lake, "wx", pa.Table.from_pandas(wx, preserve_index=False))
    reg = resolve(definitions())
    check_against_lake(reg, lake)  # runs each function once on nulls
    rng = np.random.default_rng(1)
    n = 400
    ents = pd.DataFrame({
        "origin": rng.choice(["EWR", "JFK", "LGA", "BOS"], n),  # BOS: no weather
        "event_timestamp": T0 + pd.to_timedelta(rng.integers(0, 50 * 60, n), unit="min"),
        "sched_dep_time": rng.choice([515, 1259, 1700, 2359], n).astype("int16"),
    })
    got = get_historical_features(lake, reg, ents, "svc", partitions=3).to_pandas()
    assert list(got.columns) == ["origin", "event_timestamp", "sched_dep_time", "temp",
                                 "temp_dewp_spread", "low_visibility", "dep_minute_of_day",
                                 "evening"]  # dewp and visib were inputs only
    plain = get_historical_features(lake, reg, ents, ["weather"], partitions=3).to_pandas()
    want = plain["temp"] - plain["dewp"]
    np.testing.assert_allclose(got["temp_dewp_spread"].to_numpy(dtype=float),
                               want.to_numpy(dtype=float), equal_nan=True)
    assert got["temp_dewp_spread"].isna().sum() > 0 and got["temp_dewp_spread"].notna().sum() > 100
    low = plain["visib"] < 3
    seen = got["low_visibility"].notna()
    assert seen.tolist() == plain["visib"].notna().tolist()
    assert got.loc[seen, "low_visibility"].astype(bool).tolist() == low[seen].tolist()
    hhmm = ents["sched_dep_time"].astype(int)
    assert got["dep_minute_of_day"].tolist() == ((hhmm // 100) * 60 + hhmm % 100).tolist()
    assert got["evening"].tolist() == (hhmm >= 1700).tolist()


def test_online_lookup_runs_the_same_function(ray_session, lake, tmp_path):
    write_table(lake, "wx", pa.Table.from_pandas(weather(2), preserve_index=False))
    reg = resolve(definitions())
    store = ("sqlite", {"path": str(tmp_path / "online.db")})
    at = T0 + dt.timedelta(hours=47)
    materialize(lake, reg, store, None, at)
    origins = ["EWR", "JFK", "LGA", "BOS"]
    times = [515, 1700, 2359, 900]
    offline = get_historical_features(
        lake, reg, pd.DataFrame({"origin": origins, "event_timestamp": [at] * 4,
                                 "sched_dep_time": pd.array(times, "int16")}), "svc").to_pandas()
    online = get_online_features(open_store(*store[:1], **store[1]), reg, "svc",
                                 {"origin": origins, "sched_dep_time": times}, now=at)
    names = online["metadata"]["feature_names"]
    # Request fields feed the functions and, as in Feast, are not echoed back.
    assert names == ["origin", "temp", "temp_dewp_spread", "low_visibility",
                     "dep_minute_of_day", "evening"]
    cols = dict(zip(names, online["results"]))
    for f in names[1:]:
        off = [None if pd.isna(v) else v for v in offline[f].tolist()]
        on = cols[f]["values"]
        assert [round(v, 9) if isinstance(v, float) else v for v in on] == \
            [round(float(v), 9) if isinstance(v, float) else v for v in off], f
    assert cols["temp_dewp_spread"]["statuses"][3] == "NULL_VALUE"  # BOS: no weather


def test_on_demand_errors_name_the_fix(ray_session, lake):
    with pytest.raises(ConfigError, match="cannot import"):
        resolve(definitions("raylake.features.transforms:nope"))
    with pytest.raises(ConfigError, match="not 'package.module:function'"):
        resolve(definitions("weather_derived"))
    # A function that reads a column its view does not give it fails at apply time.
    reg = resolve(definitions("raylake.features.transforms:departure_time"))
    write_table(lake, "wx", pa.Table.from_pandas(weather(), preserve_index=False))
    with pytest.raises(TransformError, match="raised KeyError: 'sched_dep_time'"):
        check_against_lake(reg, lake)
    reg = resolve(definitions())
    ents = pd.DataFrame({"origin": ["EWR"], "event_timestamp": [T0]})
    with pytest.raises(ConfigError, match=r"request field\(s\) \['sched_dep_time'\]"):
        get_historical_features(lake, reg, ents, "svc")
    with pytest.raises(ConfigError, match="on-demand view"):
        reg.view("weather_derived")
