"""Data-driven pipelines (Pachyderm) and ``repro`` (DVC) over the lake's run records.

A pipeline (``conf/pipelines/<name>.yaml``) is a graph of stages, each one raylake job
with its overrides, the tables it reads and writes. ``raylake pipelines run`` runs the
stages whose inputs have versions newer than their last successful run read (or whose
source folder holds new files), in dependency order; ``watch`` keeps doing it;
``raylake repro`` also re-runs stages whose config or code changed. See
docs/pipelines.md.
"""

from raylake.pipelines.config import (
    PipelineConfig,
    PipelineError,
    StageConfig,
    load_pipeline,
    pipeline_names,
)
from raylake.pipelines.runner import PipelineResult, PipelineRunner, StageResult

__all__ = ["PipelineConfig", "PipelineError", "PipelineResult", "PipelineRunner",
           "StageConfig", "StageResult", "load_pipeline", "pipeline_names"]
