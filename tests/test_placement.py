"""A Ray Train run's placement group left reserved after the run is removed, on the
session Ray: Train V2's controller was seen leaving a restarted worker group's group
behind (its CPUs then starve every later run on 2 CPUs). Groups that existed before the
run, and anything inside a Tune trial (an actor), are left alone."""

from __future__ import annotations

import time

import pytest

from raylake.train import placement

pytestmark = pytest.mark.slow


def test_what_a_run_left_reserved_is_removed_and_nothing_else(ray_session):
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group

    before = placement_group([{"CPU": 0.25}])
    ray.get(before.ready())

    @ray.remote(num_cpus=0)
    class Controller:  # creates its worker group's placement group, as Train's does
        def reserve(self) -> str:
            pg = placement_group([{"CPU": 0.5}, {"CPU": 0.5}])
            ray.get(pg.ready())
            return pg.id.hex()

    controller = Controller.remote()
    try:
        with placement.released_after("a test run"):
            left = ray.get(controller.reserve.remote())
            assert left in placement._reserved_by_this_job()
        table = ray.util.placement_group_table()
        assert table[left]["state"] == "REMOVED"
        assert table[before.id.hex()]["state"] == "CREATED"
        # Its CPUs come back (the resource view catches up within a moment).
        deadline = time.monotonic() + 30
        while ray.available_resources().get("CPU", 0) < 1.75 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert ray.available_resources().get("CPU", 0) >= 1.75  # 2 less the 0.25 kept
    finally:
        remove_placement_group(before)
        ray.kill(controller)


def test_inside_an_actor_nothing_is_removed(ray_session):
    import ray
    from ray.util.placement_group import remove_placement_group

    @ray.remote(num_cpus=0)
    class Trial:  # a Tune trial: its sibling trials' groups are not its to remove
        def run(self) -> str:
            from ray.util.placement_group import placement_group

            with placement.released_after("a trial"):
                pg = placement_group([{"CPU": 0.5}])
                ray.get(pg.ready())
            return pg.id.hex()

    trial = Trial.remote()
    pg = ray.get(trial.run.remote())
    try:
        assert ray.util.placement_group_table()[pg]["state"] == "CREATED"
    finally:
        from ray.util.placement_group import PlacementGroup
        remove_placement_group(PlacementGroup(ray.PlacementGroupID(bytes.fromhex(pg))))
        ray.kill(trial)
