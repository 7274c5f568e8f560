"""Ingestion: files -> Ray Data -> typed, checked rows -> Delta tables (+ quarantine)."""

from raylake.ingest.pipeline import TableResult, ingest_table

__all__ = ["TableResult", "ingest_table"]
