"""What a Train worker holds (CPUs, GPUs) and what it computes with (threads)."""

from __future__ import annotations

from typing import Any


def worker_threads(scaling: Any) -> int:
    """Threads a Train worker computes with: ``threads_per_worker``, else its whole CPUs."""
    return scaling.threads_per_worker or max(1, int(scaling.cpus_per_worker))


def scaling_config(scaling: Any) -> Any:
    """Ray Train's ScalingConfig from ``train.scaling``: ``num_workers`` workers of
    ``cpus_per_worker`` CPUs each, and one GPU each with ``use_gpu``."""
    import ray.train

    resources = {"CPU": scaling.cpus_per_worker}
    if scaling.use_gpu:
        resources["GPU"] = 1
    return ray.train.ScalingConfig(num_workers=scaling.num_workers, use_gpu=scaling.use_gpu,
                                   resources_per_worker=resources)


def worker_env(scaling: Any) -> dict[str, Any]:
    """The runtime env Train workers start with.

    Ray sets OMP_NUM_THREADS to a worker's whole CPUs (1 for a fraction) as the process
    starts, and OpenMP reads it once: XGBoost then caps ``nthread`` at it, and boosting
    ran 1.5x slower than with the same threads outside Ray. The workers start with the
    threads they are meant to use instead.
    """
    return {"env_vars": {"OMP_NUM_THREADS": str(worker_threads(scaling))}}
