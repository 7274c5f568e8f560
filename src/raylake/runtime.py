"""Start or join Ray: a local Ray with nothing configured, else the named cluster."""

from __future__ import annotations

import logging
import os
import re
from typing import Any

import ray

from raylake.errors import RaylakeError, RuntimeConnectError

log = logging.getLogger(__name__)

TRAIN_POLL_ENV, TRAIN_POLL_S = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.25"


def resolve_address(address: str | None) -> str | None:
    """``ray.address`` from config wins, then RAY_ADDRESS; None means a new local Ray.

    ``auto`` joins a cluster started on this machine with ``ray start``.
    """
    return address or os.environ.get("RAY_ADDRESS") or None


def ensure_ray(ray_cfg: Any) -> dict[str, Any]:
    """Connect this process to Ray once; return what it connected to.

    Inside ``ray job submit`` RAY_ADDRESS is set, so the job joins its cluster.
    An already initialised Ray (tests, notebooks) is used as it is.
    """
    if ray.is_initialized():
        quiet_ray_data()
        return {"address": ray.get_runtime_context().gcs_address, "started": False}
    address = resolve_address(ray_cfg.address)
    kwargs: dict[str, Any] = {"namespace": ray_cfg.namespace, "log_to_driver": True}
    if address is None:
        # "local" always starts a new Ray; a cluster left running on this
        # machine by `ray start` is joined only when asked (ray.address=auto).
        kwargs.update(num_cpus=ray_cfg.num_cpus, include_dashboard=ray_cfg.include_dashboard)
        # Ray Train's controller collects a worker's report when it polls, every 2 s by
        # default, and the worker waits for it: a 4-report run lost up to 8 s. The local
        # Ray's processes inherit this environment (a cluster sets its own).
        os.environ.setdefault(TRAIN_POLL_ENV, TRAIN_POLL_S)
        if not ray_cfg.include_dashboard:
            kwargs["runtime_env"] = {"worker_process_setup_hook": "raylake.runtime.quiet_workers"}
    try:
        ctx = ray.init(address=address or "local", **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = address or "a new local Ray"
        raise RuntimeConnectError(
            f"Cannot start or reach Ray at {where}: {exc}. Check ray.address / RAY_ADDRESS, "
            "that the cluster is up, and that its auth token is available "
            "(RAY_AUTH_TOKEN or ~/.ray/auth_token)."
        ) from exc
    log.info("ray: %s", "connected to " + address if address else "started a local Ray")
    quiet_ray_data()
    # Typed as BaseContext; without a ray:// address ray.init returns a RayContext.
    info = ctx.address_info  # type: ignore[attr-defined]
    return {"address": info.get("gcs_address"), "started": address is None}


def serve_until_stopped() -> None:
    """Keep a server job's process (and so its Serve apps) alive until it is killed:
    `raylake serve` and `raylake serve-features` block here; tests and `chain` pass
    ``blocking=False`` and return at once."""
    import time

    while True:
        time.sleep(3600)


def quiet_workers() -> None:
    """Run in every worker of a local Ray started without its dashboard. Ray Train's
    placement-group cleaner asks the State API, which needs the dashboard, once a
    second while a run trains, and warns every time; raylake removes what the cleaner
    would (see raylake.train.placement)."""
    logging.getLogger(
        "ray.train.v2._internal.execution.controller.placement_group_cleaner"
    ).setLevel(logging.ERROR)


def quiet_ray_data() -> None:
    """Jobs print their own summaries: no progress bars or per-dataset INFO lines."""
    import ray.data

    logging.getLogger("ray.data").setLevel(logging.WARNING)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False


# -- errors of Ray tasks ---------------------------------------------------------------
# Shared by every domain whose work runs in Ray tasks: what failed, not Ray's wrapper.


def task_cause(exc: BaseException) -> BaseException | None:
    """The innermost exception in reach through Ray's wrappers (RayTaskError's
    ``cause``, ``__cause__`` chains); a raylake error on the way is returned at once."""
    from ray.exceptions import RayTaskError

    seen: set[int] = set()
    current: BaseException | None = exc
    found: BaseException | None = None
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, RaylakeError) and not isinstance(current, RayTaskError):
            return current
        found = current
        nxt = current.cause if isinstance(current, RayTaskError) else None
        current = nxt if nxt is not None else current.__cause__
    return found


# The exception line of a traceback: "zipfile.BadZipFile: File is not a zip file".
EXCEPTION_LINE = re.compile(r"^([A-Za-z_][\w.]*): (.+)$")


def remote_error(exc: BaseException) -> tuple[str, str] | None:
    """The exception a task's traceback shows (raylake's own, else the innermost), as
    (qualified class name, message). Ray Data wraps a task's exception in a
    UserCodeException whose pickled form drops ``__cause__``; only the remote
    traceback's text still names it."""
    from ray.exceptions import RayTaskError

    current: BaseException | None = exc
    seen: set[int] = set()
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, RayTaskError):
            found = [(m.group(1), m.group(2).strip()) for m in map(EXCEPTION_LINE.match,
                                                                  str(current).splitlines())
                     if m and not m.group(1).startswith("ray.")
                     and m.group(1).rsplit(".", 1)[-1][:1].isupper()]
            # raylake's own error says what to fix; else the innermost cause.
            ours = [f for f in found if f[0].startswith("raylake.errors.")]
            if ours or found:
                return (ours or found)[0]
        current = current.__cause__
    return None
