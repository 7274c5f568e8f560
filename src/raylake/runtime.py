"""Start or join Ray: a local Ray with nothing configured, else the named cluster."""

from __future__ import annotations

import logging
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
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
    if _CONSOLE.log_file:
        # Serve's actors write their INFO lines to Ray's session logs only (a local Ray's
        # processes inherit this environment; other lines: _route_worker_lines).
        os.environ.setdefault("RAY_SERVE_LOG_TO_STDERR", "0")
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
    else:
        shipped = package_env()
        if shipped:
            kwargs["runtime_env"] = shipped
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
    gate_ray_logs()
    _route_worker_lines()
    quiet_ray_data()
    # Typed as BaseContext; without a ray:// address ray.init returns a RayContext.
    info = ctx.address_info  # type: ignore[attr-defined]
    return {"address": info.get("gcs_address"), "started": address is None}


JOB_CONFIG_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"  # set by Ray for a submitted job's driver


def package_env() -> dict[str, Any]:
    """The runtime env that lets a submitted job's workers import the raylake its driver
    imported, when this driver runs as a Ray job (``ray job submit``) with raylake from a
    source tree (``jobs/_tree.py`` put the uploaded ``src/`` first) rather than an
    installed package. Empty otherwise: an installed raylake is the cluster's own.

    Ray starts every worker of the job in the job's working directory, so a folder of it
    goes on their path as ``PYTHONPATH=<folder relative to it>`` (``src``), on every node,
    whatever the job's ``excludes`` (they would also strip a ``py_modules`` copy: an
    exclude of ``/lake`` drops ``raylake/lake``). A tree outside the working directory is
    shipped as ``py_modules``. Nothing is added where the job's own runtime env already
    sets ``PYTHONPATH`` or ``py_modules`` (Ray refuses to merge the same key twice)."""
    import json

    import raylake

    if JOB_CONFIG_ENV not in os.environ:
        return {}
    package = Path(raylake.__file__).resolve().parent
    if {"site-packages", "dist-packages"} & set(package.parts):
        return {}
    try:
        job_env = json.loads(os.environ[JOB_CONFIG_ENV]).get("runtime_env") or {}
    except (ValueError, AttributeError):
        job_env = {}
    cwd = Path.cwd().resolve()
    if package.parent.is_relative_to(cwd):
        if (job_env.get("env_vars") or {}).get("PYTHONPATH"):
            return {}
        return {"env_vars": {"PYTHONPATH": str(package.parent.relative_to(cwd)) or "."}}
    if job_env.get("py_modules"):
        return {}
    return {"py_modules": [str(package)]}


def serve_until_stopped() -> None:
    """Keep a server job's process (and so its Serve apps) alive until it is killed:
    `raylake serve` and `raylake serve-features` block here; tests and `chain` pass
    ``blocking=False`` and return at once."""
    import time

    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:  # Ctrl-C: the caller stops its apps; no traceback
        return


def quiet_workers() -> None:
    """Run in every worker of a local Ray started without its dashboard. Ray Train's
    placement-group cleaner asks the State API, which needs the dashboard, once a
    second while a run trains, and warns every time; raylake removes what the cleaner
    would (see raylake.train.placement)."""
    logging.getLogger(
        "ray.train.v2._internal.execution.controller.placement_group_cleaner"
    ).setLevel(logging.ERROR)


def quiet_ray_data() -> None:
    """Jobs print their own summaries: no per-dataset INFO lines on the terminal, and
    Ray Data's progress bars only where the console asks for them (an interactive
    terminal, or ``progress=true``)."""
    import ray.data

    if not _CONSOLE.log_file:  # no log file to take them: drop them
        logging.getLogger("ray.data").setLevel(logging.WARNING)
    else:
        gate_ray_logs()
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = _CONSOLE.progress
    ctx.print_on_execution_start = False
    if _CONSOLE.progress:
        _transient_bars()


def _transient_bars() -> None:
    """Ray Data's bars vanish when their dataset is done (tqdm ``leave=False``): a job's
    summary line says what it made, and a chain of jobs keeps to one screen. Ray Data
    draws a driver's bars with the ``tqdm`` of its progress_bar module or, by default
    (``use_ray_tqdm``), of ``ray.experimental.tqdm_ray``; both are given a tqdm that does
    not leave its bar. Without those module names, bars stay as Ray draws them."""
    try:
        import tqdm  # type: ignore[import-untyped]
        from ray.data._internal.progress import progress_bar
        from ray.experimental import tqdm_ray
    except ImportError:  # pragma: no cover - no tqdm: Ray Data draws no bars at all
        return
    if getattr(progress_bar.tqdm, "_raylake", False):
        return

    class Transient(tqdm.tqdm):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["leave"] = False
            super().__init__(*args, **kwargs)

    class Module:
        _raylake = True

    Module.tqdm = Transient  # type: ignore[attr-defined]
    progress_bar.tqdm = Module
    if getattr(tqdm_ray, "real_tqdm", None) is not None:
        tqdm_ray.real_tqdm = Module


# -- the terminal: Ray's own lines to a log file, progress where someone watches ----------
# `raylake <job>` and jobs/*.py configure it (cli.run_job, from the `log_level`,
# `progress` and `log_dir` keys); a job called from Python (tests, notebooks,
# benchmarks) gets the default: nothing routed, no progress bars.

# A line a Ray worker prints for the terminal (a training round, an epoch): the driver
# shows it without Ray's "(RayTrainWorker pid=...)" prefix at every log_level.
MARK = "[raylake] "
_LEVEL = re.compile(r"\b(DEBUG|INFO|WARNING|WARN|ERROR|CRITICAL|FATAL)\b")
# Ray's C++ core (glog): "[2026-12-03 09:22:31,986 E 11207 11244] core_worker.cc:2465: ..."
_GLOG = re.compile(r"^\[[\d\- :,.]+ ([DIWEF]) \d+ \d+\] ")


@dataclass
class Console:
    """What the terminal shows. ``level``: Ray's own lines at this level or above are
    shown (every line goes to ``log_file``, when set); ``progress``: Ray Data's progress
    bars."""

    progress: bool = False
    level: int = logging.ERROR
    log_file: str | None = None


_CONSOLE = Console()
_FILE_HANDLER: logging.Handler | None = None
_RESTORE: list[Any] = []  # how to put Ray's printers back (close_console)


def console() -> Console:
    """The console this process was configured with (the default when none was)."""
    return _CONSOLE


def wants_progress(setting: bool | None) -> bool:
    """``progress``: true or false as given; null (the default) means on an interactive
    terminal only, never under pytest or with stdout piped to a file."""
    if setting is not None:
        return setting
    return sys.stdout.isatty() and sys.stderr.isatty() and "PYTEST_CURRENT_TEST" not in os.environ


def log_path(log_dir: str | None, lake_root: str, job: str) -> Path:
    """Where this run's Ray lines go: ``log_dir``, else ``<lake.root>/_logs`` for a local
    lake, else ``.raylake/logs`` (a lake on object storage); one file per command."""
    import datetime as dt

    folder = Path(log_dir) if log_dir else (
        Path(lake_root) / "_logs" if "://" not in lake_root else Path(".raylake") / "logs")
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
    return folder / f"{job}-{stamp}-{os.getpid()}.log"


def configure_console(*, progress: bool, level: str, log_file: str | Path) -> Console:
    """Route Ray's own lines (its loggers in this process, the lines its workers print)
    to ``log_file``; the terminal shows those at ``level`` or above, raylake's own lines
    and errors. Called once per command; a second call (a `chain` step) keeps the file."""
    global _CONSOLE, _FILE_HANDLER
    if _FILE_HANDLER is None:
        path = Path(log_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(path, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler.setLevel(logging.DEBUG)
        _FILE_HANDLER = handler
        _CONSOLE = Console(progress, logging.getLevelName(level.upper()), str(path))
    gate_ray_logs()
    _route_worker_lines()
    return _CONSOLE


def close_console() -> None:
    """Undo :func:`configure_console` when the command ends: Ray's loggers and the
    printers of worker lines and raylet messages work as before (a process that runs
    more than one command, such as a test, gets each its own file)."""
    global _CONSOLE, _FILE_HANDLER
    for restore in reversed(_RESTORE):
        try:
            restore()
        except Exception:  # pragma: no cover - Ray already shut down
            pass
    _RESTORE.clear()
    for logger in _ray_loggers():
        for tee in [f for f in logger.filters if isinstance(f, _Tee)]:
            logger.removeFilter(tee)
        for h in list(logger.handlers):
            if h is _FILE_HANDLER:
                logger.removeHandler(h)
            for gate in [f for f in h.filters if isinstance(f, _Gate)]:
                h.removeFilter(gate)
    if _FILE_HANDLER is not None:
        _FILE_HANDLER.close()
    _CONSOLE, _FILE_HANDLER = Console(), None


class _Gate(logging.Filter):
    """On a terminal handler of Ray's loggers: only records at the console's level."""

    def filter(self, record: logging.LogRecord) -> bool:
        """True when ``record`` is at the console's level or above."""
        return record.levelno >= _CONSOLE.level


class _Tee(logging.Filter):
    """On a Ray logger that sets up its own terminal handler as it starts (Serve, at
    ``serve.start``): a record under the console's level goes to the file only."""

    def filter(self, record: logging.LogRecord) -> bool:
        """True (to every handler) at the console's level; else to the file alone."""
        if record.levelno >= _CONSOLE.level:
            return True
        if _FILE_HANDLER is not None:
            _FILE_HANDLER.handle(record)
        return False


# Ray loggers that install their terminal handler when their library starts.
_LATE_LOGGERS = ("ray.serve",)


def _ray_loggers() -> list[logging.Logger]:
    names = [n for n in list(logging.root.manager.loggerDict) if n == "ray" or n.startswith("ray.")]
    return [logging.getLogger(n) for n in names]


def gate_ray_logs() -> None:
    """Send Ray's loggers in this process to the log file and keep their terminal
    handlers to the console's level. Ray and Serve set up loggers as they start, so this
    runs again after ``ray.init`` and ``serve.start``; nothing without a log file."""
    if _FILE_HANDLER is None:
        return
    for name in _LATE_LOGGERS:
        late = logging.getLogger(name)
        if not any(isinstance(f, _Tee) for f in late.filters):
            late.addFilter(_Tee())
    for logger in _ray_loggers():
        for h in logger.handlers:
            if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler) \
                    and not any(isinstance(f, _Gate) for f in h.filters):
                h.addFilter(_Gate())
        # The file hangs on "ray" and on each Ray logger that does not pass records up.
        if (logger.name == "ray" or not logger.propagate) and _FILE_HANDLER not in logger.handlers:
            logger.addHandler(_FILE_HANDLER)
        if logger.name == "ray" and logger.level > logging.INFO:
            logger.setLevel(logging.INFO)


def line_level(line: str) -> int:
    """The level a line printed by a Ray worker is at: its level word (``INFO``,
    ``ERROR``); Ray's C++ core lines (glog) and lines without a level count as INFO."""
    glog = _GLOG.match(line)
    if glog:
        return logging.CRITICAL if glog.group(1) == "F" else logging.INFO
    m = _LEVEL.search(line[:80])
    if m is None:
        return logging.INFO
    word = {"WARN": "WARNING", "FATAL": "CRITICAL"}.get(m.group(1), m.group(1))
    return int(logging.getLevelName(word))


def sort_worker_lines(lines: list[str], level: int) -> tuple[list[str], list[str]]:
    """(raylake's own lines, stripped of :data:`MARK`; the other lines the terminal shows)
    of a batch of worker lines: Ray's at ``level`` or above, and a Python traceback with
    the lines that follow a shown line without a level of their own (an ERROR line's
    traceback has none: judged alone, its lines would count as INFO and the user would
    see the error without where it came from). The progress bars of Ray Data inside
    workers (a Train worker's shard) are dropped: a job's bars are the driver's."""
    from ray.experimental.tqdm_ray import RAY_TQDM_MAGIC

    ours, shown = [], []
    follow = False  # the last line was shown: a line without a level continues it
    for line in lines:
        if MARK in line:
            ours.append(line.split(MARK, 1)[1])
            follow = False
        elif RAY_TQDM_MAGIC in line:
            continue
        elif line.startswith("Traceback (most recent call last)"):
            shown.append(line)
            follow = True
        elif _GLOG.match(line) or _LEVEL.search(line[:80]):
            follow = line_level(line) >= level
            if follow:
                shown.append(line)
        elif follow or level <= logging.INFO:
            shown.append(line)
    return ours, shown


def _route_worker_lines() -> None:
    """Replace the driver's printer of worker lines (``ray_print_logs``) with one that
    writes every line to the log file and passes on what :func:`sort_worker_lines`
    keeps. Ray has no public hook for this; without the private one the lines print
    as Ray prints them."""
    if _FILE_HANDLER is None or not ray.is_initialized():
        return
    try:
        from ray._private.ray_logging import global_worker_stdstream_dispatcher as dispatcher
    except ImportError:  # pragma: no cover - a Ray without the hook
        return
    handlers = dict(dispatcher.handlers)
    printer = handlers.get("ray_print_logs")
    if printer is None or getattr(printer, "_raylake", False):
        return

    def route(data: dict[str, Any]) -> None:
        from ray.experimental.tqdm_ray import RAY_TQDM_MAGIC

        lines = [line for line in data.get("lines") or [] if RAY_TQDM_MAGIC not in line]
        if data.get("pid") == "autoscaler":  # its events only, as Ray prints them
            from ray._private.worker import filter_autoscaler_events

            lines = list(filter_autoscaler_events(lines))
        who = data.get("actor_name") or data.get("task_name") or ""
        for line in lines:
            if _FILE_HANDLER is not None:
                _FILE_HANDLER.handle(logging.LogRecord(
                    "ray.workers", logging.INFO, "", 0, f"({who} pid={data.get('pid')}) {line}",
                    None, None))
        ours, shown = sort_worker_lines(lines, _CONSOLE.level)
        for line in ours:
            print(line, file=sys.stdout, flush=True)
        if shown:
            printer({**data, "lines": shown})

    route._raylake = True  # type: ignore[attr-defined]
    dispatcher.remove_handler("ray_print_logs")
    dispatcher.add_handler("ray_print_logs", route)

    def restore() -> None:
        dispatcher.remove_handler("ray_print_logs")
        dispatcher.add_handler("ray_print_logs", printer)

    _RESTORE.append(restore)
    _route_raylet_messages()


def _route_raylet_messages() -> None:
    """The errors the raylet publishes to the driver (a task retried, an actor gone
    while Serve shuts down) print through ``print_to_stdstream``: they go to the log
    file and count as warnings (a failure that matters reaches the job as an exception)."""
    from ray._private import worker as ray_worker

    original = ray_worker.print_to_stdstream
    if getattr(original, "_raylake", False):
        return

    def printer(data: dict[str, Any], ignore_prefix: bool) -> None:
        if data.get("pid") != "raylet":
            original(data, ignore_prefix)
            return
        for line in data.get("lines") or []:
            if _FILE_HANDLER is not None:
                _FILE_HANDLER.handle(logging.LogRecord(
                    "ray.raylet", logging.WARNING, "", 0, f"(raylet) {line}", None, None))
        if _CONSOLE.level <= logging.WARNING:
            original(data, ignore_prefix)

    printer._raylake = True  # type: ignore[attr-defined]
    ray_worker.print_to_stdstream = printer
    _RESTORE.append(lambda: setattr(ray_worker, "print_to_stdstream", original))


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
