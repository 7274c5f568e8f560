"""The placement group of a Ray Train run that Tune stops, removed by the sweep.

Ray Train V2 removes a run's placement group when the run ends. When the run's
controller dies instead (Tune kills a trial that ASHA stops, and the controller with
it), a detached cleaner is meant to remove it, but the cleaner asks the State API
whether the controller is alive, and that API needs the dashboard; raylake's local Ray
(and the test session) runs without one. The stopped trial's workers would keep their
CPUs reserved and the next trial would wait for them forever. So rank 0 names its
placement group in every report, and the sweep removes it when the trial ends.
"""

from __future__ import annotations

KEY = "_placement_group"


def current() -> str | None:
    """This worker's placement group id (hex), or None outside one."""
    from ray.util import get_current_placement_group

    pg = get_current_placement_group()
    return pg.id.hex() if pg is not None else None


def remove(pg_hex: str | None) -> bool:
    """Remove the placement group if it is still reserved; True if it was. Never raises:
    a failed clean-up is logged, and must not end the sweep that asked for it."""
    import logging

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
        logging.getLogger(__name__).warning("could not remove placement group %s: %s",
                                            pg_hex, exc)
        return False
