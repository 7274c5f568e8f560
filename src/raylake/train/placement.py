"""The placement group of a Ray Train run that Tune stops, removed by the sweep.

Ray Train V2 removes a run's placement group when the run ends. When the run's
controller dies instead (Tune kills a trial that ASHA stops, and the controller with
it), a detached cleaner is meant to remove it, but the cleaner asks the State API
whether the controller is alive, and that API needs the dashboard; raylake's local Ray
(and the test session) runs without one. The stopped trial's workers would keep their
CPUs reserved and the next trial would wait for them forever. So rank 0 names its
placement group in every report, and the sweep removes it when the trial ends.

A run that ends on the driver can leave one behind too: after a worker is lost and the
worker group restarted, the controller's shutdown can time out stopping its cleaner
("Failed to stop PlacementGroupCleaner gracefully", seen on 2 loaded CPUs) and the
group's CPUs stay reserved with no worker in them; every later run or Ray Data task
then waits for CPUs that never come back. ``released_after`` removes what a run left.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

KEY = "_placement_group"
log = logging.getLogger(__name__)


def current() -> str | None:
    """This worker's placement group id (hex), or None outside one."""
    from ray.util import get_current_placement_group

    pg = get_current_placement_group()
    return pg.id.hex() if pg is not None else None


def _reserved_by_this_job() -> set[str]:
    """Ids of the reserved placement groups created by this job (a placement group id
    ends with the id of the job that created it, controllers' groups included)."""
    import ray

    job = ray.get_runtime_context().get_job_id()
    return {pg for pg, entry in ray.util.placement_group_table().items()
            if entry.get("state") == "CREATED" and pg.endswith(job)}


@contextmanager
def released_after(what: str) -> Iterator[None]:
    """Around a Ray Train ``fit()`` on the driver: the placement groups the run created and
    left reserved are removed when it returns or raises. Not inside a Tune trial (an
    actor), where other trials of the same job hold groups of their own; the sweep
    removes those (above)."""
    import ray

    if ray.get_runtime_context().get_actor_id() is not None:
        yield
        return
    before = _reserved_by_this_job()
    try:
        yield
    finally:
        left = _reserved_by_this_job() - before
        for pg in sorted(left):
            if remove(pg):
                log.warning("%s left placement group %s reserved after it ended; removed it "
                            "so its CPUs are free for what runs next", what, pg)


def remove(pg_hex: str | None) -> bool:
    """Remove the placement group if it is still reserved; True if it was. Never raises:
    a failed clean-up is logged, and must not end the sweep that asked for it."""
    import ray
    from ray.util.placement_group import PlacementGroup, remove_placement_group

    if not pg_hex:
        return False
    try:
        entry = ray.util.placement_group_table().get(pg_hex)
        if not entry or entry.get("state") in ("REMOVED", None):
            return False
        remove_placement_group(PlacementGroup(ray.PlacementGroupID(bytes.fromhex(pg_hex))))
        return True
    except Exception as exc:  # noqa: BLE001 - best effort, see the docstring
        log.warning("could not remove placement group %s: %s", pg_hex, exc)
        return False
