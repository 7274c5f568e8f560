"""A job's config derived from another's: how one job runs another in the same process.

The chain, the replay, continuous training and pipelines run jobs one after another in
one process, each on a copy of the composed config with its ``job`` and a few dotted
keys changed, so every step sees the same lake, Ray and settings as the caller.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf


def job_config(cfg: DictConfig, job: str, **keys: Any) -> DictConfig:
    """A copy of ``cfg`` for job ``job`` with the dotted ``keys`` set (``cfg`` unchanged).

    A mapping value merges into the node (a typed mapping such as
    ``monitor.thresholds`` takes dicts only that way); anything else replaces it.
    """
    c = cfg.copy()
    OmegaConf.set_struct(c, False)  # keys a job's own group adds are not in the caller's
    c.job = job
    for k, v in keys.items():
        OmegaConf.update(c, k, v, merge=isinstance(v, dict))
    return c
