"""``synthsr-bids bids_dir output_dir {participant,group}``: the BIDS-App entry point.

cli → workflows → interfaces → (inference | bids). User errors end with one line on stderr
and a documented exit code (see :data:`~synthsr_nipype.cli.bids_parser.EXIT_CODES`).
"""

from __future__ import annotations

import errno
import gc
import logging
import multiprocessing
import os
import re
import signal
import sys
import tempfile
import threading
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

# Nipype asks a web service for updates on import; a BIDS-App on a cluster node must not.
os.environ.setdefault("NIPYPE_NO_ET", "1")

from ..errors import EXIT_FAILED, EXIT_OK, DependencyError, InputError, SynthSRError  # noqa: E402
from .bids_parser import get_parser  # noqa: E402

LOCAL_PLUGINS = ("Linear", "MultiProc", "LegacyMultiProc")
# Local plugins poll every 0.1 s: with many short nodes (sinks, merges) Nipype's 2 s default
# dominates small runs. Cluster plugins query the scheduler once per pending job and poll:
# at 0.1 s that was ~13 squeue calls a second for 4 jobs, so they keep a 2 s interval.
LOCAL_POLL_SECONDS, CLUSTER_POLL_SECONDS = 0.1, 2.0

log = logging.getLogger("synthsr_bids")


def _is_within(path: Path, parent: Path) -> bool:
    try:
        path.resolve().relative_to(parent.resolve())
        return True
    except ValueError:
        return False


def _place_problem(path: Path, what: str) -> str:
    """Why ``path`` cannot be (or become) a writable folder, or ``""``; nothing is created."""
    if path.is_symlink() and not path.exists():
        return f"{what} {path} is a dangling symbolic link (to {os.readlink(path)})"
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        return (f"{what} {path} is a file, not a folder" if existing == path
                else f"{what} {path}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{what} {path}: {existing} is not writable (permissions or a read-only file system)"
    return ""


def _check_device(device: str) -> None:
    """A device that is not on this machine ends the run before any work: exit 2, one line."""
    if device in ("auto", "cpu"):
        return
    from ..inference import pick_device

    pick_device(device)  # raises DependencyError


def _check_plugin(settings: dict[str, Any], source: Path | None) -> None:
    from nipype.pipeline import plugins

    name = settings["plugin"]
    if not hasattr(plugins, f"{name}Plugin"):
        known = sorted(n[: -len("Plugin")] for n in dir(plugins) if n.endswith("Plugin") and n != "Plugin")
        raise InputError(f"{source}: unknown Nipype plugin {name!r}; use one of {', '.join(known)}")


def _is_graph_plugin(name: str) -> bool:
    from nipype.pipeline import plugins
    from nipype.pipeline.plugins.base import GraphPluginBase

    return issubclass(getattr(plugins, f"{name}Plugin"), GraphPluginBase)


def _run_id() -> str:
    return f"{datetime.now(timezone.utc):%Y%m%d-%H%M%S}_{uuid.uuid4()}"


def _model_info(model: str, *, required: bool) -> dict[str, Any]:
    """SHA-256, name and architecture of a model; errors become exit codes 2/3."""
    from ..model import load_model

    try:
        net = load_model(model, device="cpu")
    except SynthSRError as exc:
        if required:
            raise
        return {"error": str(exc)}
    return {"sha256": net.sha256, "name": net.name, "arch": dict(net.arch)}


def _uses_gpu(device: str) -> bool:
    """Whether SynthSR nodes will run on a CUDA GPU (then they take MultiProc GPU slots)."""
    if str(device).startswith("cuda"):
        return True
    if device == "auto":
        import torch

        return bool(torch.cuda.is_available())
    return False


def _plugin_settings(args) -> dict[str, Any]:
    """Plugin and its arguments: the YAML file wins, the command line fills the gaps."""
    settings: dict[str, Any] = {"plugin": "MultiProc", "plugin_args": {}, "poll_seconds": LOCAL_POLL_SECONDS}
    if args.use_plugin is not None:
        import yaml

        try:
            loaded = yaml.safe_load(Path(args.use_plugin).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise InputError(f"{args.use_plugin}: cannot read plugin settings ({exc})") from None
        if not isinstance(loaded, dict) or "plugin" not in loaded:
            raise InputError(f"{args.use_plugin}: expected a YAML mapping with a 'plugin' key")
        settings["plugin"] = str(loaded["plugin"])
        settings["plugin_args"] = dict(loaded.get("plugin_args") or {})
        # Nipype reads the poll interval from its config, not from plugin_args: take it from there.
        poll = settings["plugin_args"].pop("poll_sleep_duration", None)
        try:
            settings["poll_seconds"] = float(
                poll if poll is not None
                else LOCAL_POLL_SECONDS if settings["plugin"] in LOCAL_PLUGINS else CLUSTER_POLL_SECONDS
            )
        except (TypeError, ValueError):
            raise InputError(f"{args.use_plugin}: poll_sleep_duration must be a number of seconds") from None
    elif args.nprocs == 1:
        settings["plugin"] = "Linear"
    pargs = settings["plugin_args"]
    if settings["plugin"] == "MultiProc":
        pargs.setdefault("n_procs", args.nprocs)
        if args.mem_gb:
            pargs.setdefault("memory_gb", args.mem_gb)
        pargs.setdefault("raise_insufficient", False)
        # torch starts OpenMP threads in this process; forking it can deadlock workers.
        pargs.setdefault("mp_context", "forkserver")
        if pargs["mp_context"] == "forkserver":
            # The server imports torch and the interfaces once (no threads started yet, so forking it is
            # safe); each worker then forks from it instead of paying those imports itself.
            os.environ["SYNTHSR_BIDS_NIPYPE_LEVEL"] = _nipype_level(args)
            multiprocessing.set_forkserver_preload(
                ["torch", "synthsr_nipype.interfaces", "synthsr_nipype.cli.worker_logging"]
            )
    return settings


def _ensure_logname() -> None:
    """Nipype's cluster plugins name jobs after ``$LOGNAME`` (a KeyError when it is unset, as in
    many containers and CI runners); take the account name instead."""
    if not os.environ.get("LOGNAME"):
        import getpass

        try:
            os.environ["LOGNAME"] = getpass.getuser()
        except (KeyError, OSError):
            os.environ["LOGNAME"] = f"uid{os.getuid()}"


def _start_workers_server(settings: dict[str, Any]) -> None:
    """Start MultiProc's forkserver now, so that its imports (~1.4 s) overlap the BIDS indexing
    instead of holding up the first submission."""
    if settings["plugin"] == "MultiProc" and settings["plugin_args"].get("mp_context") == "forkserver":
        from multiprocessing import forkserver

        forkserver.ensure_running()


def _nipype_level(args) -> str:
    return "DEBUG" if args.verbose_count > 1 else ("INFO" if args.verbose_count else "WARNING")


def _configure_nipype(args, *, log_dir: Path, poll_seconds: float = LOCAL_POLL_SECONDS) -> None:
    from nipype import config
    from nipype import logging as nlogging

    level = _nipype_level(args)
    # Config is process-wide: set every key on each call so in-process reruns start clean.
    config.update_config(
        {
            "logging": {
                "workflow_level": level,
                "interface_level": level,
                "utils_level": "WARNING",
                "log_directory": str(log_dir),
                "log_to_file": True,
            },
            "execution": {
                "crashdump_dir": str(log_dir),
                "crashfile_format": "txt",
                "hash_method": "content",
                "stop_on_first_crash": bool(args.stop_on_first_crash),
                "remove_unnecessary_outputs": False,
                "create_report": True,
                "check_version": False,
                "poll_sleep_duration": poll_seconds,
            },
            "monitoring": {"enabled": bool(args.resource_monitor)},
        }
    )
    nlogging.update_logging(config)
    _quiet_nipype_console(verbose=bool(args.verbose_count))
    if args.resource_monitor:
        config.enable_resource_monitor()
    # Worker processes (MultiProc) import nipype afresh and read nipype.cfg from
    # $NIPYPE_CONFIG_DIR, not this process's config: give them the same logging levels.
    cfg = log_dir / "nipype.cfg"
    cfg.write_text(
        "[logging]\n"
        f"workflow_level = {level}\ninterface_level = {level}\nutils_level = WARNING\n"
        "[execution]\nhash_method = content\ncrashfile_format = txt\n"
        f"crashdump_dir = {log_dir}\n"
    )


def _drop_record(record: logging.LogRecord) -> bool:  # noqa: ARG001 - logging.Filter protocol
    return False


def _quiet_nipype_console(*, verbose: bool) -> None:
    """Without ``-v``, Nipype writes to ``logs/<run>/pypeline.log`` only: a failed node's
    traceback (dozens of lines) is summarised in one line per scan by :func:`_crash_lines`."""
    nipype_logger = logging.getLogger("nipype")
    nipype_logger.propagate = False  # its own console handler; not twice through the root's
    for handler in nipype_logger.handlers:
        if type(handler) is logging.StreamHandler:
            handler.removeFilter(_drop_record)
            if not verbose:
                handler.addFilter(_drop_record)


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
    return f"no space left on {_mount_point(target)} writing {target}; free space and rerun the same command"


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


def _crash_lines(log_dir: Path, bids_dir: Path) -> tuple[list[str], int]:
    """One line per crash file: the file and the problem for a scan that could not be read
    (:class:`~synthsr_nipype.errors.InputImageError`), else the node and its last error line.
    Also returns how many of them were bad scans."""
    lines, bad_scans = [], 0
    for crash in sorted(log_dir.glob("crash-*.txt")):
        text = [ln.strip() for ln in crash.read_text(errors="replace").splitlines() if ln.strip()]
        full = _no_space(text)
        if full is not None:  # one line says it all: every later node fails the same way
            return [full], 0
        image_error = next((ln.split("InputImageError: ", 1)[1] for ln in reversed(text)
                            if "InputImageError: " in ln), None)
        if image_error is not None:
            bad_scans += 1
            path, _, problem = image_error.partition(": ")
            if Path(path).is_relative_to(bids_dir):
                path = Path(path).relative_to(bids_dir).as_posix()
            lines.append(f"{path}: {problem}; not processed")
            continue
        node = next((ln.split(":", 1)[1].strip() for ln in text if ln.startswith("Node:")), crash.name)
        error = next((ln for ln in reversed(text) if "Error" in ln or "error" in ln), "")
        lines.append(f"node {node} failed: {error[:300]} (details: {crash})")
    return lines, bad_scans


def _crash_summary(log_dir: Path) -> str:
    crashes = sorted(log_dir.glob("crash-*.txt"))
    if not crashes:
        return f"see the log in {log_dir}"
    first = crashes[0]
    lines = [ln.strip() for ln in first.read_text(errors="replace").splitlines() if ln.strip()]
    error = next((ln for ln in reversed(lines) if "Error" in ln or "error" in ln), "")
    return f"{len(crashes)} crash file(s) in {log_dir}; first {first.name}: {error}"[:600]


def _select(args):
    """Layout, query and plan; raises an InputError with one line when nothing can run."""
    from ..bids.labels import normalize_labels
    from ..bids.plan import DEFAULT_BASE_FEATURES, build_plan
    from ..bids.query import (
        build_layout,
        collect_anat,
        describe_selection,
        load_bids_filters,
        unindexed_scans,
    )
    from ..model.registry import channel_suffixes

    participants = normalize_labels(args.participant_label, "sub")
    sessions = normalize_labels(args.session_label, "ses")
    filters = load_bids_filters(args.bids_filter_file)
    layout = build_layout(
        args.bids_dir,
        database_dir=args.bids_database_dir,
        validate=not args.skip_bids_validation,
    )
    files = collect_anat(
        layout,
        suffixes=args.suffixes,
        participant_labels=participants,
        session_labels=sessions,
        bids_filters=filters,
    )
    unindexed = unindexed_scans(
        layout, suffixes=args.suffixes, participant_labels=participants, session_labels=sessions
    )
    selection = describe_selection(
        suffixes=args.suffixes,
        participant_labels=participants,
        session_labels=sessions,
        bids_filters=filters,
    )
    models: dict[str, dict[str, Any]] = {}
    in_channels = None
    # a model card that names the channels needs no loading to plan
    if channel_suffixes(args.model) is None and (
        not args.dry_run or Path(args.model).suffix == ".h5"
    ):
        models[args.model] = _model_info(args.model, required=not args.dry_run)
        in_channels = models[args.model].get("arch", {}).get("in_channels")
    if args.dry_run:  # the error a real run would stop with, before it reads any header
        from ..model.registry import resolve_model_path

        for name in dict.fromkeys((args.model, args.general_model)):
            try:
                resolve_model_path(name)
            except SynthSRError as exc:
                models.setdefault(name, {})["error"] = str(exc)
                models[name]["exit_code"] = exc.exit_code
    base = models.get(args.model, {}).get("arch", {}).get("base_features", DEFAULT_BASE_FEATURES)
    plan = build_plan(
        files,
        bids_dir=args.bids_dir,
        model=args.model,
        general_model=args.general_model,
        in_channels=in_channels,
        reference_filter=filters.get("reference"),
        base_features=int(base),
        unindexed=unindexed,
    )
    return plan, selection, models


def _write_outputs_scaffold(args, plan, log_dir: Path, *, morphometry: bool = False) -> None:
    from ..atomic import atomic_write_bytes
    from ..bids.derivatives import write_bidsignore, write_dataset_description
    from ..bids.plan import format_plan

    write_dataset_description(args.output_dir, args.bids_dir)
    # logs, and each scan's ITK transform (_xfm.txt: not yet in the BIDS schema)
    ignore = ["logs/", "*_xfm.txt", "*_xfm.json"]
    if morphometry:  # community suffixes (_morph.tsv, _map.nii.gz), transforms, group/
        from ..morphometry.derivatives import bidsignore_patterns

        ignore += bidsignore_patterns()
    write_bidsignore(args.output_dir, ignore)
    readme = args.output_dir / "README.md"
    if not readme.exists():
        from .. import __version__

        atomic_write_bytes(readme, (
            f"# SynthSR derivatives\n\nSynthetic 1 mm MP-RAGE-like T1-weighted images of the raw dataset "
            f"named in `dataset_description.json` (SourceDatasets), one per anatomical scan and one fused "
            f"per subject and session, written by synthsr-nipype {__version__}. Methods and references: "
            f"`logs/CITATION.md`; what ran: `logs/<run>/plan.txt`.\n").encode())
    atomic_write_bytes(log_dir / "plan.txt", (format_plan(plan) + "\n").encode())


def _nothing_to_run(args, plan, selection: str) -> str:
    """Why the selection cannot run ("" when it can): no usable scan in the dataset, or a
    participant selected by label without one (as fMRIPrep does for a missing T1w)."""
    def detail(groups) -> str:
        skipped = [s for g in groups for s in g.skipped]
        if not skipped:
            return ""
        return (f"; {len(skipped)} matching scan(s) skipped, e.g. {Path(skipped[0][0]).name}: "
                f"{skipped[0][1]}")

    if not plan.jobs:
        return f"no usable anatomical scan matched ({selection}){detail(plan.groups)}"
    if args.participant_label:
        from ..bids.labels import normalize_labels

        lacking = [
            sub for sub in normalize_labels(args.participant_label, "sub") or []
            if not any(g.jobs for g in plan.groups if g.subject == sub)
        ]
        if lacking:
            groups = [g for g in plan.groups if g.subject in lacking]
            return (f"participant(s) {', '.join(lacking)} have no usable anatomical scan "
                    f"({selection}){detail(groups)}")
    return ""


def _seg_backend(args) -> str | None:
    """The participant-level backend: ``--seg-backend``, ants when only ``--tbm`` asks for it."""
    backend = None if args.seg_backend in (None, "none") else args.seg_backend
    return backend or ("ants" if args.tbm else None)


def _check_morphometry_dependencies(args, backend: str | None) -> None:
    """A backend that cannot run here ends the run before any work: exit 2, one line."""
    if backend is None:
        return
    from ..morphometry.freesurfer import check_backend_available

    problem = check_backend_available(backend, fs_license_file=args.fs_license_file)
    if problem:
        raise DependencyError(f"--seg-backend {backend}: {problem}")


def run_group(args) -> int:
    """``group``: collect the participant volumes of ``output_dir`` into ``output_dir/group``."""
    from ..bids.labels import normalize_labels
    from .bids_parser import DefaultStr
    from .group import run_group_level

    participants = normalize_labels(args.participant_label, "sub")
    sessions = normalize_labels(args.session_label, "ses")
    model = None
    if not isinstance(args.model, DefaultStr):  # given: select that model's volumes
        from ..model.registry import model_label

        model = model_label(args.model)
    code = run_group_level(
        args.output_dir,
        seg_backend=None if args.seg_backend in (None, "none") else args.seg_backend,
        model=model,
        participant_label=participants,
        session_label=sessions,
    )
    if code == EXIT_OK:
        print(f"synthsr-bids: group tables, figures and group.html in {args.output_dir / 'group'}")
    return code


def run_app(args) -> int:
    """Run with parsed arguments; returns the exit code (raises an InputError for user errors)."""
    args.bids_dir = Path(args.bids_dir).resolve()
    args.output_dir = Path(args.output_dir).absolute()
    if args.analysis_level == "group":
        return run_group(args)
    seg_backend = _seg_backend(args)
    # Before anything is read or written: a missing FreeSurfer (or licence) is exit 2.
    _check_morphometry_dependencies(args, seg_backend)
    if args.fs_subjects_dir is not None:
        args.fs_subjects_dir = Path(args.fs_subjects_dir).absolute()
    if args.bids_database_dir is not None:
        args.bids_database_dir = Path(args.bids_database_dir).absolute()
    # A model file is named by its absolute path: the same file gives the same cache key
    # whatever the directory the command is started from.
    for attr in ("model", "general_model"):
        if Path(getattr(args, attr)).expanduser().is_file():
            setattr(args, attr, str(Path(getattr(args, attr)).expanduser().resolve()))
    work_dir = Path(args.work_dir).absolute()
    if _is_within(work_dir, args.bids_dir):
        raise InputError(f"work directory {work_dir} is inside the BIDS dataset; use -w elsewhere")
    # Outputs inside the raw dataset would be indexed as raw scans by the next run, except
    # under derivatives/ (which pybids never indexes as raw data).
    if _is_within(args.output_dir, args.bids_dir) and not _is_within(
        args.output_dir, args.bids_dir / "derivatives"
    ):
        raise InputError(
            f"output directory {args.output_dir} is inside the BIDS dataset; use "
            f"{args.bids_dir / 'derivatives'}/... or a folder outside it"
        )
    if args.bids_database_dir is not None and _is_within(args.bids_database_dir, args.bids_dir):
        raise InputError(
            f"--bids-database-dir {args.bids_database_dir} is inside the BIDS dataset, which is "
            "never written to; use a folder outside it"
        )
    for place, what in ((args.output_dir, "output directory"), (work_dir, "work directory"),
                        (args.bids_database_dir, "--bids-database-dir")):
        problem = place and _place_problem(place, what)
        if problem:
            raise InputError(problem)
    _check_device(args.device)
    if args.resource_monitor:
        try:
            import psutil  # noqa: F401  (nipype's monitor needs it; not a nipype dependency)
        except ImportError:
            raise DependencyError("--resource-monitor needs psutil: pip install psutil") from None
    if args.omp_nthreads is None:
        args.omp_nthreads = max(1, min(args.nprocs - 1, 8))
    elif args.omp_nthreads > args.nprocs:
        log.warning("--omp-nthreads %d > --nprocs %d", args.omp_nthreads, args.nprocs)

    settings = None if args.dry_run else _plugin_settings(args)
    if settings is not None:
        _check_plugin(settings, args.use_plugin)
        _start_workers_server(settings)
    plan, selection, models = _select(args)
    from ..bids.plan import format_plan, skipped_scans

    problem = _nothing_to_run(args, plan, selection)
    if args.dry_run:
        print(format_plan(plan))
        # the model first: a real run stops there before it reads any header
        for error in [info["error"] for info in models.values() if "error" in info][:1]:
            print(f"a real run would stop: {error}")
        if problem:
            print(f"{'nothing would run' if not plan.jobs else 'a real run would stop'}: {problem}")
        return EXIT_OK
    skipped = skipped_scans(plan)
    for relpath, reason in skipped:
        print(f"ERROR: {relpath}: {reason}; not processed", file=sys.stderr)
    if problem:
        raise InputError(problem)

    # Models of the plan other than --model (the general model next to a multi-channel one).
    for name in sorted({job.model for job in plan.jobs} - set(models)):
        models[name] = _model_info(name, required=True)

    from ..atomic import atomic_write_bytes, sweep_temporaries
    from ..workflows.base import citation_markdown, init_synthsr_bids_wf

    for stale in sweep_temporaries(args.output_dir) if args.output_dir.is_dir() else []:
        log.info("removed %s, left by a run that was killed", stale)
    run_id = _run_id()
    log_dir = args.output_dir / "logs" / run_id
    log_dir.mkdir(parents=True, exist_ok=True)
    work_dir.mkdir(parents=True, exist_ok=True)
    _configure_nipype(args, log_dir=log_dir, poll_seconds=settings["poll_seconds"])
    if settings["plugin"] not in LOCAL_PLUGINS:
        _ensure_logname()
    _write_outputs_scaffold(args, plan, log_dir, morphometry=seg_backend is not None)

    workflow = init_synthsr_bids_wf(
        plan=plan,
        output_dir=args.output_dir,
        work_dir=work_dir,
        model_sha256={name: info["sha256"] for name, info in models.items()},
        ct=args.ct,
        flip=not args.disable_flipping,
        sharpen=not args.disable_sharpening,
        device=args.device,
        use_gpu=_uses_gpu(args.device),
        omp_nthreads=args.omp_nthreads,
        fusion_method=args.fusion,
        seg_backend=seg_backend,
        tbm=args.tbm,
        template_resolution=args.template_resolution,
        fs_license_file=args.fs_license_file,
        fs_subjects_dir=args.fs_subjects_dir,
        synthseg_robust=args.synthseg_robust,
        synthseg_parc=args.synthseg_parc,
    )
    atomic_write_bytes(
        args.output_dir / "logs" / "CITATION.md", citation_markdown(workflow).encode()
    )
    if args.write_graph:
        try:
            workflow.write_graph(
                dotfilename=str(args.output_dir / "logs" / "graph.dot"),
                graph2use="colored",
                format="svg",
                simple_form=True,
            )
        except Exception as exc:  # graphviz missing: the .dot file is still there
            log.warning("graph picture not written (%s); the .dot file is in logs/", exc)

    handler = _attach_resource_log(settings, log_dir) if args.resource_monitor else None
    log.info("running %d SynthSR job(s) with %s", len(plan.jobs), settings["plugin"])
    cwd = os.getcwd()
    crashed: list[str] = []
    bad_scans = 0
    old_config_dir = os.environ.get("NIPYPE_CONFIG_DIR")
    os.environ["NIPYPE_CONFIG_DIR"] = str(log_dir)  # see _configure_nipype
    # Scratch folders of the nodes (synthsr-ants-*, pymp-*...) go to the work directory: a killed
    # run leaves them there, not in a shared $TMPDIR.
    old_tmpdir = os.environ.get("TMPDIR")
    scratch = work_dir / "tmp"
    scratch.mkdir(exist_ok=True)
    os.environ["TMPDIR"] = str(scratch)
    tempfile.tempdir = None  # tempfile caches the folder it found first
    try:
        # Nipype's resource monitor drops .proc-* files in the current directory and
        # MultiProc workers inherit it: run from the work directory, not the user's.
        os.chdir(work_dir)
        # MultiProc runs a full gc.collect() before each submission and after each node it runs
        # itself; with torch and the BIDS index loaded each took ~0.15 s (~4 s for 4 one-scan
        # subjects). Frozen start-up objects are skipped, so a collection scans only the run's.
        gc.freeze()
        plugin_args = dict(settings["plugin_args"])
        if not _is_graph_plugin(settings["plugin"]):  # those submit the whole graph at once
            plugin_args["status_callback"] = _stop_if_interrupted(plugin_args.get("status_callback"))
        workflow.run(plugin=settings["plugin"], plugin_args=plugin_args)
    except Exception as exc:  # any node failure: the crash files hold the details
        crashed, bad_scans = _crash_lines(log_dir, args.bids_dir)
        if not crashed and isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            crashed = [no_space_line(exc.filename or work_dir)]
        if crashed and crashed[0].startswith("no space left"):
            print(f"ERROR: {crashed[0]}", file=sys.stderr)
            return EXIT_FAILED
        for line in crashed:
            print(f"ERROR: {line}", file=sys.stderr)
        if not crashed:
            print(f"ERROR: the workflow did not finish ({type(exc).__name__}); "
                  f"{_crash_summary(log_dir)}", file=sys.stderr)
    finally:
        gc.unfreeze()
        os.chdir(cwd)
        for name, value in (("NIPYPE_CONFIG_DIR", old_config_dir), ("TMPDIR", old_tmpdir)):
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        tempfile.tempdir = None
        if handler is not None:
            logging.getLogger("callback").removeHandler(handler)
            handler.close()
        if args.resource_monitor:
            # Process-wide: nodes run later in this process (tests, notebooks) would keep
            # writing .proc-* files into their current directory.
            from nipype import config

            config.disable_resource_monitor()
    if crashed or skipped:
        failed = len(crashed) - bad_scans
        print(f"ERROR: {len(skipped) + bad_scans} selected scan(s) not processed ({len(skipped)} refused "
              f"before processing, {bad_scans} unreadable when processed)"
              + (f" and {failed} other node failure(s)" if failed else "")
              + f"; everything else is in {args.output_dir}; logs/{run_id}/plan.txt lists them",
              file=sys.stderr)
        return EXIT_FAILED
    morph = (f"; {seg_backend} morphometry{' and TBM' if args.tbm else ''} of each"
             if seg_backend else "")
    print(f"synthsr-bids: {len(plan.jobs)} scan(s) and {len(plan.runnable_groups)} fused "
          f"volume(s){morph} in {args.output_dir}")
    return EXIT_OK


def _attach_resource_log(settings: dict[str, Any], log_dir: Path) -> logging.Handler:
    from nipype.utils.profiler import log_nodes_cb

    cb_log = logging.getLogger("callback")
    cb_log.setLevel(logging.DEBUG)
    handler = logging.FileHandler(log_dir / "resource_monitor.jsonl")
    cb_log.addHandler(handler)
    settings["plugin_args"]["status_callback"] = log_nodes_cb
    return handler


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``synthsr-bids``; returns the exit code (0, 1, 2 or 3)."""
    args = get_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose_count > 1 else logging.INFO if args.verbose_count
        else logging.WARNING,
        format="%(levelname)s: %(message)s",
    )
    # A full disk under logs/ must not print logging's own tracebacks: the run reports it once.
    logging.raiseExceptions = False
    # Batch schedulers end a job with SIGTERM at its wall-time limit: stop as on Ctrl-C.
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    _interrupted.clear()
    try:
        return run_app(args)
    except SynthSRError as exc:
        print("ERROR: " + " ".join(str(exc).split()), file=sys.stderr)  # one line, whatever it quotes
        return exc.exit_code
    except KeyboardInterrupt:
        print("ERROR: interrupted; rerun the same command to resume", file=sys.stderr)
        return EXIT_FAILED
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        print(f"ERROR: {no_space_line(exc.filename or args.output_dir)}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


#: Set by SIGINT/SIGTERM. Nipype records an exception raised inside a node as that node's crash
#: and goes on with the others; the status callback raises again at the next node boundary.
_interrupted = threading.Event()


def _interrupt(signum: int, frame) -> None:  # noqa: ARG001 - signal handler signature
    _interrupted.set()
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _stop_if_interrupted(callback=None):
    """A Nipype status callback that ends the run once a signal came (then calls ``callback``)."""
    def status(node, event) -> None:
        if callback is not None:
            callback(node, event)
        if _interrupted.is_set():
            raise KeyboardInterrupt("interrupted")

    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
