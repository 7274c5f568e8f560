"""Governance over the whole lake: erasure, retention, the OpenLineage export, audit."""
