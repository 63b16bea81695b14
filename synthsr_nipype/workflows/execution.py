"""How Nipype runs a workflow: the plugin and its arguments, Nipype's configuration and logging,
the worker processes, and the run itself (fMRIPrep's ``config.nipype`` is the model, without
its global mutable state: :class:`NipypeSettings` is frozen and passed explicitly).
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import os
import re
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..crashes import read_crashes
from ..errors import InputError
from ..settings import RunOptions, log_level

LOCAL_PLUGINS = ("Linear", "MultiProc", "LegacyMultiProc")
# Local plugins poll every 0.1 s: with many short nodes (sinks, merges) Nipype's 2 s default
# dominates small runs. Cluster plugins query the scheduler once per pending job and poll:
# at 0.1 s that was ~13 squeue calls a second for 4 jobs, so they keep a 2 s interval.
LOCAL_POLL_SECONDS, CLUSTER_POLL_SECONDS = 0.1, 2.0

log = logging.getLogger("synthsr_bids")


@dataclass(frozen=True)
class NipypeSettings:
    """The plugin, its arguments and Nipype's configuration for one run."""

    plugin: str = "MultiProc"
    plugin_args: dict[str, Any] = field(default_factory=dict)
    poll_seconds: float = LOCAL_POLL_SECONDS
    level: str = "WARNING"
    stop_on_first_crash: bool = False
    resource_monitor: bool = False

    @classmethod
    def from_run(cls, run: RunOptions) -> NipypeSettings:
        """Plugin and its arguments: the YAML file wins, the command line fills the gaps."""
        plugin, plugin_args, poll_seconds = "MultiProc", {}, LOCAL_POLL_SECONDS
        if run.use_plugin is not None:
            plugin, plugin_args, poll_seconds = _read_plugin_file(Path(run.use_plugin))
        elif run.nprocs == 1:
            plugin = "Linear"
        if plugin == "MultiProc":
            plugin_args.setdefault("n_procs", run.nprocs)
            if run.mem_gb:
                plugin_args.setdefault("memory_gb", run.mem_gb)
            plugin_args.setdefault("raise_insufficient", False)
            # torch starts OpenMP threads in this process; forking it can deadlock workers.
            plugin_args.setdefault("mp_context", "forkserver")
        return cls(plugin=plugin, plugin_args=plugin_args, poll_seconds=poll_seconds,
                   level=log_level(run.verbose_count), stop_on_first_crash=run.stop_on_first_crash,
                   resource_monitor=run.resource_monitor)

    def check(self, source: str | os.PathLike[str] | None = None) -> None:
        """An unknown plugin ends the run before any work: exit 1, one line."""
        from nipype.pipeline import plugins

        if not hasattr(plugins, f"{self.plugin}Plugin"):
            known = sorted(n[: -len("Plugin")] for n in dir(plugins)
                           if n.endswith("Plugin") and n != "Plugin")
            raise InputError(f"{source}: unknown Nipype plugin {self.plugin!r}; "
                             f"use one of {', '.join(known)}")

    @property
    def is_graph_plugin(self) -> bool:
        """Whether the plugin submits the whole graph at once (no per-node status callback)."""
        from nipype.pipeline import plugins
        from nipype.pipeline.plugins.base import GraphPluginBase

        return issubclass(getattr(plugins, f"{self.plugin}Plugin"), GraphPluginBase)

    @property
    def uses_forkserver(self) -> bool:
        return self.plugin == "MultiProc" and self.plugin_args.get("mp_context") == "forkserver"

    def start_workers(self) -> None:
        """Start MultiProc's forkserver now, so that its imports (~1.4 s) overlap the BIDS
        indexing instead of holding up the first submission."""
        if self.uses_forkserver:
            # The server imports torch and the interfaces once (no threads started yet, so
            # forking it is safe); each worker then forks from it instead of paying those
            # imports itself. Its workers take their Nipype console level from the environment.
            os.environ["SYNTHSR_BIDS_NIPYPE_LEVEL"] = self.level
            multiprocessing.set_forkserver_preload(
                ["torch", "synthsr_nipype.interfaces", "synthsr_nipype.workflows.worker_logging"]
            )
            from multiprocessing import forkserver

            forkserver.ensure_running()

    def init(self, log_dir: Path) -> None:
        """Configure Nipype in this process and, through ``log_dir/nipype.cfg``, in its workers."""
        from nipype import config
        from nipype import logging as nlogging

        # Config is process-wide: set every key on each call so in-process reruns start clean.
        config.update_config(
            {
                "logging": {
                    "workflow_level": self.level,
                    "interface_level": self.level,
                    "utils_level": "WARNING",
                    "log_directory": str(log_dir),
                    "log_to_file": True,
                },
                "execution": {
                    "crashdump_dir": str(log_dir),
                    "crashfile_format": "txt",
                    "hash_method": "content",
                    "stop_on_first_crash": bool(self.stop_on_first_crash),
                    "remove_unnecessary_outputs": False,
                    "create_report": True,
                    "check_version": False,
                    "poll_sleep_duration": self.poll_seconds,
                },
                "monitoring": {"enabled": bool(self.resource_monitor)},
            }
        )
        nlogging.update_logging(config)
        _quiet_nipype_console(verbose=self.level != "WARNING")
        if self.resource_monitor:
            config.enable_resource_monitor()
        # Worker processes (MultiProc) import nipype afresh and read nipype.cfg from
        # $NIPYPE_CONFIG_DIR, not this process's config: give them the same logging levels.
        (log_dir / "nipype.cfg").write_text(
            "[logging]\n"
            f"workflow_level = {self.level}\ninterface_level = {self.level}\nutils_level = WARNING\n"
            "[execution]\nhash_method = content\ncrashfile_format = txt\n"
            f"crashdump_dir = {log_dir}\n"
        )
        if self.plugin not in LOCAL_PLUGINS:
            ensure_logname()

    def run(self, workflow, *, log_dir: Path, work_dir: Path, wrap_status_callback=None) -> None:
        """Run ``workflow``; any node failure raises (the crash files are in ``log_dir``).

        ``wrap_status_callback(callback)`` returns the per-node status callback that calls
        ``callback`` (a wrapper, not the callback itself; not for graph plugins, which submit the
        whole graph at once)."""
        plugin_args = dict(self.plugin_args)
        with _resource_log(log_dir, plugin_args, enabled=self.resource_monitor), \
                _worker_environment(log_dir, work_dir):
            if not self.is_graph_plugin:
                inner = plugin_args.get("status_callback")
                if wrap_status_callback is not None:
                    inner = wrap_status_callback(inner)
                plugin_args["status_callback"] = progress_callback(workflow, log_dir / "pypeline.log", inner)
            workflow.run(plugin=self.plugin, plugin_args=plugin_args)


def _progress_label(fullname: str) -> str:
    """``synthsr_bids_wf.single_subject_01_wf.synthsr_T2w_wf.synthsr`` -> ``sub-01 synthsr_T2w synthsr``."""
    parts = fullname.split(".")[1:] or fullname.split(".")
    words = []
    for part in parts:
        if part.startswith("single_subject_") and part.endswith("_wf"):
            words.append("sub-" + part[len("single_subject_"):-3])
        else:
            words.append(part[:-3] if part.endswith("_wf") else part)
    return " ".join(words)


def progress_callback(workflow, log_file: Path, inner=None):
    """A Nipype status callback: one line per finished node (``[3/12] sub-01 synthsr_FLAIR synthsr
    done (41 s)``) on stderr without ``-v``, and the same line in ``log_file`` (the run's
    pypeline.log). Plumbing nodes (inputs/outputs of a sub-workflow) are not counted."""
    import sys
    import time

    def counted(node) -> bool:
        return type(node.interface).__name__ != "IdentityInterface"

    total = sum(1 for node in workflow._get_all_nodes() if counted(node))
    started: dict[str, float] = {}
    finished = [0]

    def callback(node, status):
        if inner is not None:
            inner(node, status)
        if not counted(node):
            return
        if status == "start":
            started[node.fullname] = time.monotonic()
            return
        if status not in ("end", "exception"):
            return
        finished[0] += 1
        now = time.monotonic()
        seconds = max(0.0, now - started.pop(node.fullname, now))
        what = "done" if status == "end" else "FAILED"
        line = (f"[{finished[0]}/{max(total, finished[0])}] {_progress_label(node.fullname)} "
                f"{what} ({seconds:.0f} s)")
        print(line, file=sys.stderr, flush=True)
        try:
            with open(log_file, "a", encoding="utf-8") as log:
                log.write(time.strftime("%y%m%d-%H:%M:%S ") + line + "\n")
        except OSError:
            pass  # a full or unwritable logs/ must not stop the run (errors are reported elsewhere)

    return callback


def _read_plugin_file(path: Path) -> tuple[str, dict[str, Any], float]:
    import yaml

    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(f"{path}: cannot read plugin settings ({exc})") from None
    if not isinstance(loaded, dict) or "plugin" not in loaded:
        raise InputError(f"{path}: expected a YAML mapping with a 'plugin' key")
    plugin = str(loaded["plugin"])
    plugin_args = dict(loaded.get("plugin_args") or {})
    # Nipype reads the poll interval from its config, not from plugin_args: take it from there.
    poll = plugin_args.pop("poll_sleep_duration", None)
    try:
        poll_seconds = float(
            poll if poll is not None
            else LOCAL_POLL_SECONDS if plugin in LOCAL_PLUGINS else CLUSTER_POLL_SECONDS
        )
    except (TypeError, ValueError):
        raise InputError(f"{path}: poll_sleep_duration must be a number of seconds") from None
    return plugin, plugin_args, poll_seconds


def _drop_record(record: logging.LogRecord) -> bool:  # noqa: ARG001 - logging.Filter protocol
    return False


def _quiet_nipype_console(*, verbose: bool) -> None:
    """Without ``-v``, Nipype writes to ``logs/<run>/pypeline.log`` only: a failed node's
    traceback (dozens of lines) is summarised in one line per scan by :func:`crash_lines`."""
    nipype_logger = logging.getLogger("nipype")
    nipype_logger.propagate = False  # its own console handler; not twice through the root's
    for handler in nipype_logger.handlers:
        if type(handler) is logging.StreamHandler:
            handler.removeFilter(_drop_record)
            if not verbose:
                handler.addFilter(_drop_record)


def ensure_logname() -> None:
    """Nipype's cluster plugins name jobs after ``$LOGNAME`` (a KeyError when it is unset, as in
    many containers and CI runners); take the account name instead."""
    if not os.environ.get("LOGNAME"):
        import getpass

        try:
            os.environ["LOGNAME"] = getpass.getuser()
        except (KeyError, OSError):
            os.environ["LOGNAME"] = f"uid{os.getuid()}"


#: Scratch folders a run makes in its $TMPDIR: multiprocessing's (the forkserver's socket,
#: MultiProc's workers), the ANTs subprocesses' and fusion's (tempfile's default names too).
SCRATCH_PREFIXES = ("pymp-", "synthsr-ants-", "synthsr_fusion_", "tmp")


def scratch_dir(work_dir: Path) -> Path:
    """Where a run's scratch folders go: ``<work_dir>/tmp``, never a shared $TMPDIR."""
    return Path(work_dir) / "tmp"


#: A Unix socket's path holds at most 107 bytes (Linux's sun_path); multiprocessing puts the
#: forkserver's socket at ``<tmp>/pymp-XXXXXXXX/listener-XXXXXXXX`` (33 more than ``<tmp>``).
_SOCKET_PATH_MAX, _SOCKET_SUFFIX = 107, 33
#: Name of the short link to a deep scratch folder, made in the system temporary folder.
SCRATCH_LINK_PREFIX = "synthsr-scratch-"


def scratch_link(scratch: Path, system_tmp: str | None = None) -> Path | None:
    """Where a short link to ``scratch`` goes when ``scratch`` is too deep for the forkserver's
    socket (a work dir of more than ~70 characters, common on clusters); ``None`` when it fits.
    The name is a digest of ``scratch``, so a rerun of the same work dir reuses the same link."""
    if len(os.fsencode(scratch)) + _SOCKET_SUFFIX <= _SOCKET_PATH_MAX:
        return None
    import hashlib

    base = system_tmp or tempfile.gettempdir()
    if len(os.fsencode(base)) > 40:  # the link itself must be short
        base = "/tmp"
    digest = hashlib.sha256(os.fsencode(scratch.resolve())).hexdigest()[:12]
    return Path(base) / f"{SCRATCH_LINK_PREFIX}{digest}"


@contextmanager
def scratch_environment(work_dir: Path):
    """``$TMPDIR`` and ``tempfile.tempdir`` point at :func:`scratch_dir` while the block runs, for
    this process and the processes it starts (MultiProc's forkserver, started inside the block,
    and its workers inherit it), so a killed run leaves its scratch in the work directory, where
    :func:`sweep_scratch` removes it; both restored afterwards.

    A scratch folder too deep for a Unix socket is reached through a short link in the system
    temporary folder (:func:`scratch_link`): the files still live in the work directory; the link
    is removed afterwards (after ``kill -9``, by the next run of the same work dir)."""
    scratch = scratch_dir(work_dir)
    scratch.mkdir(parents=True, exist_ok=True)
    old_env, old_tempdir = os.environ.get("TMPDIR"), tempfile.tempdir
    link = scratch_link(scratch)
    if link is not None:
        _make_scratch_link(link, scratch)
    where = str(link or scratch)
    os.environ["TMPDIR"] = where
    tempfile.tempdir = where  # tempfile caches the folder it found first
    try:
        yield scratch
    finally:
        if old_env is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = old_env
        tempfile.tempdir = old_tempdir


def _make_scratch_link(link: Path, scratch: Path) -> None:
    """The link of :func:`scratch_environment`; links whose work dir is gone are removed first.
    It outlives the block: this process's multiprocessing folder (and the forkserver's socket,
    reused by later in-process runs) is reached through it, so it goes at exit, after that
    folder (multiprocessing removes it at exit priority -100)."""
    import multiprocessing.util

    for stale in link.parent.glob(f"{SCRATCH_LINK_PREFIX}*"):
        if stale.is_symlink() and not stale.exists():
            stale.unlink(missing_ok=True)
    target = scratch.resolve()
    # an earlier run of this work dir (in this process, or killed) may have left it
    if not (link.is_symlink() and link.resolve() == target):
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(target, target_is_directory=True)
    multiprocessing.util.Finalize(None, link.unlink, kwargs={"missing_ok": True}, exitpriority=-101)


def sweep_scratch(work_dir: Path) -> list[Path]:
    """Remove the scratch folders an earlier run left in :func:`scratch_dir` (killed with -9, it
    could not); this process's own multiprocessing folder (an earlier in-process run's forkserver
    socket) stays. Returns what was removed."""
    import multiprocessing.process
    import shutil

    scratch = scratch_dir(work_dir)
    if not scratch.is_dir():
        return []
    own = multiprocessing.process.current_process()._config.get("tempdir")
    own = Path(own).resolve() if own else None  # reached through scratch_link's link, maybe
    removed = []
    for entry in sorted(scratch.iterdir()):
        if not entry.name.startswith(SCRATCH_PREFIXES) or (own and entry.resolve() == own):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


@contextmanager
def _worker_environment(log_dir: Path, work_dir: Path):
    """Workers read ``nipype.cfg`` from ``$NIPYPE_CONFIG_DIR``; the run happens in ``work_dir``
    with start-up objects frozen out of the garbage collector and the nodes' scratch folders in
    ``work_dir/tmp`` (:func:`scratch_environment`); all restored afterwards."""
    cwd = os.getcwd()
    old = os.environ.get("NIPYPE_CONFIG_DIR")
    os.environ["NIPYPE_CONFIG_DIR"] = str(log_dir)
    try:
        with scratch_environment(work_dir):
            # Nipype's resource monitor drops .proc-* files in the current directory and
            # MultiProc workers inherit it: run from the work directory, not the user's.
            os.chdir(work_dir)
            # MultiProc runs a full gc.collect() before each submission and after each node it
            # runs itself; with torch and the BIDS index loaded each took ~0.15 s (~4 s for 4
            # one-scan subjects). Frozen start-up objects are skipped, so a collection scans only
            # the run's.
            gc.freeze()
            try:
                yield
            finally:
                gc.unfreeze()
                os.chdir(cwd)
    finally:
        if old is None:
            os.environ.pop("NIPYPE_CONFIG_DIR", None)
        else:
            os.environ["NIPYPE_CONFIG_DIR"] = old


@contextmanager
def _resource_log(log_dir: Path, plugin_args: dict[str, Any], *, enabled: bool):
    """With the resource monitor: each node's CPU/memory into ``log_dir/resource_monitor.jsonl``."""
    if not enabled:
        yield
        return
    from nipype import config
    from nipype.utils.profiler import log_nodes_cb

    cb_log = logging.getLogger("callback")
    cb_log.setLevel(logging.DEBUG)
    handler = logging.FileHandler(log_dir / "resource_monitor.jsonl")
    cb_log.addHandler(handler)
    plugin_args["status_callback"] = log_nodes_cb
    try:
        yield
    finally:
        cb_log.removeHandler(handler)
        handler.close()
        # Process-wide: nodes run later in this process (tests, notebooks) would keep
        # writing .proc-* files into their current directory.
        config.disable_resource_monitor()


def crash_summary(log_dir: Path) -> str:
    """One line: how many crash files, and the error line of the first."""
    crashes = read_crashes(log_dir)
    if not crashes:
        return f"see the log in {log_dir}"
    first = crashes[0]
    return f"{len(crashes)} crash file(s) in {log_dir}; first {first.path.name}: {first.error}"[:600]


_ENOSPC = re.compile(r"No space left on device(?:: '([^']+)')?(?: -> '([^']+)')?")


def _mount_point(path: Path) -> Path:
    """The mount point of the file system holding ``path`` (or its nearest existing parent)."""
    path = Path(os.path.abspath(path))
    while not path.exists():
        path = path.parent
    while path.parent != path and path.parent.stat().st_dev == path.stat().st_dev:
        path = path.parent
    return path


def no_space_line(written: str | os.PathLike[str]) -> str:
    """``no space left on <mount point> writing <file>``, the file named as it will be (not as its
    temporary)."""
    from ..atomic import destination_of

    target = destination_of(Path(written))
    return (f"no space left on {_mount_point(target)} writing {target}; "
            "free space and rerun the same command")


def _no_space(text: list[str]) -> str | None:
    """The no-space line for a crash file's text, if it is one (else ``None``)."""
    for line in text:
        match = _ENOSPC.search(line)
        if match:
            written = match.group(2) or match.group(1)
            if written is None:  # the node's own folder in the work directory
                written = next((ln.split(":", 1)[1].strip() for ln in text
                                if ln.startswith("Working directory:")), ".")
            return no_space_line(written)
    return None


def crash_lines(log_dir: Path, bids_dir: Path) -> tuple[list[str], int]:
    """One line per crash file: the file and the problem for a scan that could not be read
    (:class:`~synthsr_nipype.errors.InputImageError`), else the node and its last error line.
    Also returns how many of them were bad scans."""
    lines, bad_scans = [], 0
    for crash in read_crashes(log_dir):
        full = _no_space(list(crash.lines))
        if full is not None:  # one line says it all: every later node fails the same way
            return [full], 0
        if crash.image_error is not None:
            bad_scans += 1
            path, _, problem = crash.image_error.partition(": ")
            if Path(path).is_relative_to(bids_dir):
                path = Path(path).relative_to(bids_dir).as_posix()
            lines.append(f"{path}: {problem}; not processed")
            continue
        lines.append(f"node {crash.node or crash.path.name} failed: {crash.error[:300]} (details: {crash.path})")
    return lines, bad_scans
