"""What the test session holds after each test file: the driver's open files and threads,
the machine's processes and their memory, free disk and /dev/shm. A suite that passes test
by test but fails near its end in CI is usually one of these running out (a leak across
files); this plugin writes one line per file to ``$RAYLAKE_TEST_RESOURCES`` (default
``<tmp>/raylake-test-resources.tsv``) and prints the first, the largest and the last line at
the end of the run. Read from /proc, so it needs nothing installed."""

from __future__ import annotations

import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

import pytest

FIELDS = ("file", "seconds", "driver_fds", "fd_limit", "driver_threads", "processes",
          "rss_gb_all", "mem_available_gb", "tmp_free_gb", "shm_used_gb", "ray_cpus_free",
          "ray_placement_groups")


def _all_rss_gb() -> tuple[int, float]:
    page = os.sysconf("SC_PAGE_SIZE")
    n, rss = 0, 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            rss += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * page
            n += 1
        except (OSError, IndexError, ValueError):  # the process ended meanwhile
            continue
    return n, rss / 2**30


def _meminfo_gb(key: str) -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 2**20
    return float("nan")


def _ray_state() -> tuple[float | str, int | str]:
    """Free CPUs and live placement groups of the session's Ray ("-" when none is up): a
    Ray Train run left holding its group starves every later one on 2 CPUs."""
    import sys

    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return "-", "-"
    try:
        groups = ray.util.placement_group_table().values()
        return (ray.available_resources().get("CPU", 0.0),
                sum(g.get("state") == "CREATED" for g in groups))
    except Exception as exc:  # a diagnostic never fails the run; its reason is the value
        return type(exc).__name__, "-"


def snapshot(label: str, started: float) -> dict:
    """One row of FIELDS for the moment it is called."""
    processes, rss = _all_rss_gb()
    status = Path("/proc/self/status").read_text()
    threads = next((int(line.split()[1]) for line in status.splitlines()
                    if line.startswith("Threads:")), -1)
    shm = shutil.disk_usage("/dev/shm") if os.path.isdir("/dev/shm") else None
    cpus, groups = _ray_state()
    return {
        "file": label, "seconds": round(time.monotonic() - started),
        "driver_fds": len(os.listdir("/proc/self/fd")),
        "fd_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        "driver_threads": threads, "processes": processes, "rss_gb_all": round(rss, 2),
        "mem_available_gb": round(_meminfo_gb("MemAvailable"), 2),
        "tmp_free_gb": round(shutil.disk_usage(tempfile.gettempdir()).free / 2**30, 2),
        "shm_used_gb": round(shm.used / 2**30, 2) if shm else 0.0,
        "ray_cpus_free": cpus, "ray_placement_groups": groups,
    }


class ResourceLog:
    """Writes a row when the session moves on to the next test file, and at the end."""

    def __init__(self) -> None:
        self.path = Path(os.environ.get("RAYLAKE_TEST_RESOURCES")
                         or Path(tempfile.gettempdir()) / "raylake-test-resources.tsv")
        self.started = time.monotonic()
        self.current: str | None = None
        self.rows: list[dict] = []
        self.path.write_text("\t".join(FIELDS) + "\n")
        self._write(snapshot("(start)", self.started))

    def _write(self, row: dict) -> None:
        self.rows.append(row)
        with self.path.open("a") as f:
            f.write("\t".join(str(row[k]) for k in FIELDS) + "\n")

    def pytest_runtest_logstart(self, nodeid: str, location) -> None:
        file = nodeid.split("::")[0]
        if self.current is not None and file != self.current:
            self._write(snapshot(self.current, self.started))
        self.current = file

    def pytest_sessionfinish(self) -> None:
        if self.current is not None:
            self._write(snapshot(self.current, self.started))

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if len(self.rows) < 2:
            return
        tr = terminalreporter
        tr.section("resources after each test file (first, most, last)")
        tr.write_line("  ".join(FIELDS))
        most_fds = max(self.rows, key=lambda r: r["driver_fds"])
        most_rss = max(self.rows, key=lambda r: r["rss_gb_all"])
        for row in dict.fromkeys(map(id, (self.rows[0], most_fds, most_rss, self.rows[-1]))):
            r = next(x for x in self.rows if id(x) == row)
            tr.write_line("  ".join(str(r[k]) for k in FIELDS))
        tr.write_line(f"every file: {self.path}")


# CI stops a run at 90 minutes and then shows none of pytest's summary: past this budget
# the remaining tests fail at once (naming it), so the summary, the durations and the
# lines above still print. Raise it with RAYLAKE_TEST_BUDGET_S for a slow machine.
BUDGET_S = float(os.environ.get("RAYLAKE_TEST_BUDGET_S", 75 * 60))
_STARTED = time.monotonic()


def pytest_runtest_setup(item) -> None:
    spent = time.monotonic() - _STARTED
    if spent > BUDGET_S:
        pytest.fail(f"not run: the test session has run {spent:.0f} s, past its budget of "
                    f"{BUDGET_S:.0f} s (RAYLAKE_TEST_BUDGET_S); see the durations below for "
                    "what took the time", pytrace=False)


def pytest_configure(config) -> None:
    if not config.pluginmanager.has_plugin("raylake-resources"):
        config.pluginmanager.register(ResourceLog(), "raylake-resources")
