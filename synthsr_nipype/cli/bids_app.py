"""``synthsr-bids bids_dir output_dir {participant,group}``: the BIDS-App entry point.

It only orchestrates: the arguments become frozen settings (:mod:`.bids_parser`,
:mod:`synthsr_nipype.settings`), the places and dependencies are checked (:mod:`.bids_checks`), the
selection, plan and scaffold are made (:mod:`.bids_plan`), Nipype is set up and run by
:mod:`synthsr_nipype.workflows.execution`, the group level is
:func:`synthsr_nipype.morphometry.group_level.run_group_level`. User errors end with one line
on stderr and a documented exit code (see :data:`~synthsr_nipype.cli.bids_parser.EXIT_CODES`).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

# Nipype asks a web service for updates on import; a BIDS-App on a cluster node must not.
os.environ.setdefault("NIPYPE_NO_ET", "1")

from ..atomic import atomic_write_bytes, sweep_temporaries  # noqa: E402
from ..bids.labels import normalize_labels  # noqa: E402
from ..errors import (  # noqa: E402
    EXIT_FAILED,
    EXIT_OK,
    GroupError,
    InputError,
    SynthSRError,
    report,
)
from ..settings import Settings, log_level  # noqa: E402
from .bids_checks import check_morphometry_dependencies, check_paths  # noqa: E402
from .bids_parser import get_parser  # noqa: E402
from .bids_plan import model_info, new_run_id, nothing_to_run, select, write_outputs_scaffold  # noqa: E402
from .bids_settings import earlier_run_settings, settings_from_args  # noqa: E402

log = logging.getLogger("synthsr_bids")


def plan_model_notes(plan) -> list[str]:
    """The notes (model.registry.ModelNotes) of the models the plan's jobs run, once each."""
    from ..model.registry import model_notes

    notes = (model_notes(name) for name in dict.fromkeys(job.model for job in plan.jobs))
    return [n.note for n in notes if n is not None]


def run_group(settings: Settings) -> int:
    """``group``: collect the participant volumes of ``output_dir`` into ``output_dir/group``."""
    from ..model.registry import model_label
    from ..morphometry.group_level import run_group_level

    run = settings.run
    participants = normalize_labels(run.participant_label, "sub")
    sessions = normalize_labels(run.session_label, "ses")
    try:
        group = run_group_level(
            run.output_dir,
            seg_backend=settings.morphometry.seg_backend,
            # given: select that model's volumes
            model=model_label(settings.synthsr.model) if run.model_given else None,
            participant_label=participants,
            session_label=sessions,
        )
    except GroupError as err:
        print(f"synthsr-bids group: {err}", file=sys.stderr)
        return err.exit_code
    print(f"synthsr-bids: group tables, figures and group.html in {group}")
    return EXIT_OK


def run_participant(settings: Settings, *, command_line: Sequence[str] = ("synthsr-bids",)) -> int:
    """``participant``: SynthSR, fusion and morphometry of every selected subject/session.

    A real run keeps its scratch (multiprocessing's, ANTs', fusion's) in ``<work_dir>/tmp``, for
    itself and its workers, and first removes what a killed run left there."""
    with contextlib.ExitStack() as scratch:
        return _run_participant(settings, command_line, scratch)


def _run_participant(settings: Settings, command_line: Sequence[str], scratch: contextlib.ExitStack) -> int:
    from ..workflows.execution import NipypeSettings, scratch_environment, sweep_scratch

    run = settings.run
    # Before anything is read or written: a missing FreeSurfer (or licence) is exit 2.
    check_morphometry_dependencies(settings)
    check_paths(settings)
    nipype = None
    if not run.dry_run and not run.reports_only:
        nipype = NipypeSettings.from_run(run)
        nipype.check(run.use_plugin)
    if run.reports_only:
        settings = earlier_run_settings(settings)
    plan, selection, models = select(settings)
    from ..bids.plan import format_plan, scan_warnings, skipped_scans

    problem = nothing_to_run(settings, plan, selection)
    if run.reports_only:
        return _write_reports(settings, plan, log_dir=None)
    for relpath, note in scan_warnings(plan):
        print(f"WARNING: {relpath}: {note}", file=sys.stderr)
    for note in plan_model_notes(plan):
        print(f"NOTE: {note}", file=sys.stderr)
    if nipype is None:
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
    # Only once the inputs are known good (a refused run leaves no work dir behind): from here on
    # (the forkserver and its workers included) scratch goes to <work_dir>/tmp.
    for stale in sweep_scratch(run.work_dir):
        log.info("removed %s, left by a run that was killed", stale)
    scratch.enter_context(scratch_environment(run.work_dir))
    nipype.start_workers()

    # Models of the plan other than --model (the general model next to a multi-channel one).
    for name in sorted({job.model for job in plan.jobs} - set(models)):
        models[name] = model_info(name, required=True)

    from ..workflows.base import citation_markdown, init_synthsr_bids_wf
    from ..workflows.execution import crash_lines, crash_summary, no_space_line

    for stale in sweep_temporaries(run.output_dir) if run.output_dir.is_dir() else []:
        log.info("removed %s, left by a run that was killed", stale)
    run_id = new_run_id()
    log_dir = run.output_dir / "logs" / run_id
    log_dir.mkdir(parents=True, exist_ok=True)
    run.work_dir.mkdir(parents=True, exist_ok=True)
    nipype.init(log_dir)
    write_outputs_scaffold(settings, plan, log_dir)
    from ..reports.subject import record_run

    record_run(log_dir, argv=command_line, plugin=nipype.plugin, plugin_args=nipype.plugin_args)

    workflow = init_synthsr_bids_wf(
        plan=plan,
        output_dir=run.output_dir,
        work_dir=run.work_dir,
        model_sha256={name: info["sha256"] for name, info in models.items()},
        synthsr=settings.synthsr,
        morphometry=settings.morphometry,
        omp_nthreads=run.omp_nthreads,
    )
    atomic_write_bytes(run.output_dir / "logs" / "CITATION.md", citation_markdown(workflow).encode())
    if run.write_graph:
        try:
            workflow.write_graph(
                dotfilename=str(run.output_dir / "logs" / "graph.dot"),
                graph2use="colored",
                format="svg",
                simple_form=True,
            )
        except Exception as exc:  # graphviz missing: the .dot file is still there
            log.warning("graph picture not written (%s); the .dot file is in logs/", exc)

    log.info("running %d SynthSR job(s) with %s", len(plan.jobs), nipype.plugin)
    crashed: list[str] = []
    bad_scans = 0
    try:
        nipype.run(workflow, log_dir=log_dir, work_dir=run.work_dir,
                   wrap_status_callback=_stop_if_interrupted)
    except Exception as exc:  # any node failure: the crash files hold the details
        crashed, bad_scans = crash_lines(log_dir, run.bids_dir)
        if not crashed and isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            crashed = [no_space_line(exc.filename or run.work_dir)]
        if crashed and crashed[0].startswith("no space left"):
            print(f"ERROR: {crashed[0]}", file=sys.stderr)
            return EXIT_FAILED
        for line in crashed:
            print(f"ERROR: {line}", file=sys.stderr)
        if not crashed:  # no crash file to name: the run itself failed
            print(f"ERROR: the workflow did not finish ({type(exc).__name__}); "
                  f"{crash_summary(log_dir)}", file=sys.stderr)
            return EXIT_FAILED
    record_run(log_dir, argv=command_line, plugin=nipype.plugin, plugin_args=nipype.plugin_args, finished=True)
    _write_reports(settings, plan, log_dir=log_dir)
    if crashed or skipped:
        failed = len(crashed) - bad_scans
        print(f"ERROR: {len(skipped) + bad_scans} selected scan(s) not processed "
              f"({len(skipped)} refused before processing, {bad_scans} unreadable when processed)"
              + (f" and {failed} other node failure(s)" if failed else "")
              + f"; everything else is in {run.output_dir}; logs/{run_id}/plan.txt lists them",
              file=sys.stderr)
        return EXIT_FAILED
    morph = settings.morphometry
    done = (f"; {morph.seg_backend} morphometry{' and TBM' if morph.tbm else ''} of each"
            if morph.enabled else "")
    print(f"synthsr-bids: {len(plan.jobs)} scan(s) and {len(plan.runnable_groups)} fused "
          f"volume(s){done} in {run.output_dir}")
    return EXIT_OK


def _write_reports(settings: Settings, plan, *, log_dir: Path | None) -> int:
    """Write output_dir/sub-<label>.html for every subject of the plan; a report that cannot be drawn is
    one warning line (the derivatives are what the run is for)."""
    from ..reports.subject import write_subject_reports

    try:
        pages = write_subject_reports(settings.run.output_dir, plan, work_dir=settings.run.work_dir,
                                      log_dir=log_dir)
    except Exception as exc:  # noqa: BLE001 - any drawing failure: say so in one line, keep the outputs
        print(f"WARNING: per-subject reports not written ({type(exc).__name__}: {exc})", file=sys.stderr)
        return EXIT_FAILED
    log.info("reports: %s", ", ".join(p.name for p in pages))
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``synthsr-bids``; returns the exit code (0, 1, 2 or 3)."""
    args = get_parser().parse_args(argv)
    logging.basicConfig(
        level=log_level(args.verbose_count),
        format="%(levelname)s: %(message)s",
    )
    # A full disk under logs/ must not print logging's own tracebacks: the run reports it once.
    logging.raiseExceptions = False
    # Batch schedulers end a job with SIGTERM at its wall-time limit: stop as on Ctrl-C.
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    previous_hook, sys.unraisablehook = sys.unraisablehook, _quiet_interrupts(sys.unraisablehook)
    _interrupted.clear()
    try:
        settings = settings_from_args(args)
        if settings.run.analysis_level == "group":
            return run_group(settings)
        return run_participant(settings, command_line=["synthsr-bids", *(sys.argv[1:] if argv is None else argv)])
    except SynthSRError as exc:
        return report(exc)
    except KeyboardInterrupt:
        print("ERROR: interrupted; rerun the same command to resume", file=sys.stderr)
        return EXIT_FAILED
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        from ..workflows.execution import no_space_line

        print(f"ERROR: {no_space_line(exc.filename or args.output_dir)}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sys.unraisablehook = previous_hook


#: Set by SIGINT/SIGTERM. Nipype records an exception raised inside a node as that node's crash
#: and goes on with the others; the status callback raises again at the next node boundary.
_interrupted = threading.Event()


def _interrupt(signum: int, frame) -> None:  # noqa: ARG001 - signal handler signature
    _interrupted.set()
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _quiet_interrupts(hook):
    """``sys.unraisablehook`` that drops our own interrupt when it lands where Python cannot raise
    it (a weakref callback or ``__del__``, e.g. SQLAlchemy's in pybids' index: "Exception ignored
    in ..." on stderr); :func:`_stop_if_interrupted` raises it again at the next node boundary."""
    def unraisable(info) -> None:
        if isinstance(info.exc_value, KeyboardInterrupt) and _interrupted.is_set():
            return
        hook(info)

    return unraisable


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
