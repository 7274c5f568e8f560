"""YouTube spam tables for the labeling-loop tests, written straight into a lake (no Ray):
youtube/train (files 1-4) and youtube/test (file 5), with the columns of
conf/dataset/youtube_spam.yaml (comment_id, text, label)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv

DATA = Path(__file__).resolve().parents[1] / "src" / "raylake" / "datasets" / "youtube_spam"


def youtube_table(files: list[Path]) -> pa.Table:
    parts = [pacsv.read_csv(f).select(["COMMENT_ID", "CONTENT", "label"]) for f in files]
    t = pa.concat_tables(parts)
    return pa.table({"comment_id": t.column("COMMENT_ID").cast(pa.string()),
                     "text": t.column("CONTENT").cast(pa.string()),
                     "label": t.column("label").cast(pa.int8())})


def write_youtube(lake) -> None:
    from raylake.lake.commit import write_table

    files = sorted(DATA.glob("Youtube0*.csv"))
    write_table(lake, "youtube/train", youtube_table(files[:4]))
    write_table(lake, "youtube/test", youtube_table(files[4:]))


def overrides(root: str, *extra: str) -> list[str]:
    return [f"lake.root={root}", "active_labeling=youtube_spam", *extra]
