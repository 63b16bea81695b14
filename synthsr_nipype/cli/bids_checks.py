"""What ``synthsr-bids participant`` checks before anything is written: places, device, dependencies.

A problem ends the run with one line and its exit code (:mod:`synthsr_nipype.errors`); nothing is created.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ..errors import DependencyError, InputError
from ..settings import Settings

log = logging.getLogger("synthsr_bids")


def is_within(path: Path, parent: Path) -> bool:
    try:
        path.resolve().relative_to(parent.resolve())
        return True
    except ValueError:
        return False


def place_problem(path: Path, what: str) -> str:
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


def check_device(device: str) -> None:
    """A device that is not on this machine ends the run before any work: exit 2, one line."""
    if device in ("auto", "cpu"):
        return
    from ..inference import pick_device

    pick_device(device)  # raises DependencyError


def check_morphometry_dependencies(settings: Settings) -> None:
    """A backend that cannot run here ends the run before any work: exit 2, one line."""
    backend = settings.morphometry.seg_backend
    if backend is None:
        return
    from ..morphometry.freesurfer import check_backend_available

    problem = check_backend_available(
        backend, fs_license_file=settings.morphometry.fs_license_file
    )
    if problem:
        raise DependencyError(f"--seg-backend {backend}: {problem}")


def check_paths(settings: Settings) -> None:
    run = settings.run
    if is_within(run.work_dir, run.bids_dir):
        raise InputError(f"work directory {run.work_dir} is inside the BIDS dataset; use -w elsewhere")
    # Outputs inside the raw dataset would be indexed as raw scans by the next run, except
    # under derivatives/ (which pybids never indexes as raw data).
    if is_within(run.output_dir, run.bids_dir) and not is_within(
        run.output_dir, run.bids_dir / "derivatives"
    ):
        raise InputError(
            f"output directory {run.output_dir} is inside the BIDS dataset; use "
            f"{run.bids_dir / 'derivatives'}/... or a folder outside it"
        )
    if run.bids_database_dir is not None and is_within(run.bids_database_dir, run.bids_dir):
        raise InputError(
            f"--bids-database-dir {run.bids_database_dir} is inside the BIDS dataset, which is "
            "never written to; use a folder outside it"
        )
    for place, what in ((run.output_dir, "output directory"), (run.work_dir, "work directory"),
                        (run.bids_database_dir, "--bids-database-dir")):
        problem = place and place_problem(place, what)
        if problem:
            raise InputError(problem)
    check_device(settings.synthsr.device)
    if run.resource_monitor:
        try:
            import psutil  # noqa: F401  (nipype's monitor needs it; not a nipype dependency)
        except ImportError:
            raise DependencyError("--resource-monitor needs psutil: pip install psutil") from None
    if run.omp_nthreads > run.nprocs:
        log.warning("--omp-nthreads %d > --nprocs %d", run.omp_nthreads, run.nprocs)
