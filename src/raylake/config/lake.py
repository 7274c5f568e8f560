"""Where the lake lives and how raylake reaches Ray: the ``lake`` and ``ray`` groups."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from raylake.config.values import at_least, positive
from raylake.errors import ConfigValueError


@dataclass
class LakeConfig:
    # A local path or a URI (s3://bucket/prefix). Credentials are never set
    # here: deltalake and pyarrow read them from the environment.
    root: str = "lake"
    # Non-secret storage options passed to deltalake and pyarrow
    # (e.g. AWS_REGION, AWS_ENDPOINT_URL, AWS_ALLOW_HTTP).
    storage_options: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not str(self.root).strip():
            raise ConfigValueError("lake.root is empty; give a folder or a URI, e.g. "
                                   "lake.root=lake or lake.root=s3://bucket/lake.")


@dataclass
class RayConfig:
    # None: RAY_ADDRESS if set, else a new local Ray.
    address: Optional[str] = None
    num_cpus: Optional[int] = None
    include_dashboard: bool = False
    namespace: str = "raylake"
    # CPUs reserved by each Ray Data task of raylake's pipelines. Ingestion
    # fuses read, cast and write into one task per file: a whole CPU each runs
    # fastest (measured by benchmarks/ingest.py); a fraction shares the CPU
    # with actors or Serve replicas on a small machine.
    data_task_cpus: float = 1.0

    def __post_init__(self) -> None:
        at_least("ray.num_cpus", self.num_cpus, 1, "2 (or null: all of them)")
        positive("ray.data_task_cpus", self.data_task_cpus, "0.5")
