"""The settings of a ``synthsr-bids`` run: built and normalised once from the command line,
frozen, passed explicitly (no global), and written to ``logs/<run>/settings.json``.

The rules that turn arguments into settings live here and only here: ``--seg-backend none``
means no backend, ``--tbm`` alone implies the ``ants`` backend, a model file is named by its
absolute path (the same file gives the same cache key from any folder), ``--omp-nthreads``
defaults to ``min(nprocs - 1, 8)``.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


def backend_or_none(seg_backend: str | None) -> str | None:
    """``--seg-backend`` as a backend name, ``None`` for ``none``."""
    return None if seg_backend in (None, "none") else seg_backend


def model_reference(model: str | os.PathLike[str]) -> str:
    """A registry name as it is; an existing model file by its absolute path."""
    path = Path(model).expanduser()
    return str(path.resolve()) if path.is_file() else os.fspath(model)


def log_level(verbose_count: int) -> str:
    """``-v`` count -> the level of the console and of Nipype's loggers: WARNING, INFO (``-v``), DEBUG (``-vv``).

    >>> [log_level(n) for n in (0, 1, 2, 3)]
    ['WARNING', 'INFO', 'DEBUG', 'DEBUG']
    """
    return "DEBUG" if verbose_count > 1 else ("INFO" if verbose_count else "WARNING")


def default_omp_nthreads(nprocs: int) -> int:
    return max(1, min(nprocs - 1, 8))


@dataclass(frozen=True)
class SynthSROptions:
    """How every scan goes through SynthSR and how a group's outputs are fused."""

    model: str = "v2"
    general_model: str = "v2"
    ct: bool = False
    flip: bool = True
    sharpen: bool = True
    device: str = "auto"
    use_gpu: bool = False
    omp_nthreads: int = 1
    fusion_method: str = "median"
    output_space: str = "1mm"  # "native": also each output on its input scan's grid


@dataclass(frozen=True)
class MorphometryOptions:
    """Segmentation, volumes and TBM of each fused image (``seg_backend=None``: none)."""

    seg_backend: str | None = None
    tbm: bool = False
    thickness: bool = False
    template_resolution: int = 1
    fs_license_file: str | None = None
    fs_subjects_dir: str | None = None
    synthseg_robust: bool = True
    synthseg_parc: bool = False
    seg_models_dir: str | None = None

    def __post_init__(self) -> None:
        backend = backend_or_none(self.seg_backend) or ("ants" if self.tbm or self.thickness else None)
        object.__setattr__(self, "seg_backend", backend)

    @property
    def enabled(self) -> bool:
        return self.seg_backend is not None

    def workflow_kwargs(self) -> dict[str, Any]:
        """The keywords of :func:`~synthsr_nipype.workflows.morphometry.init_morphometry_wf`."""
        return {
            "seg_backend": self.seg_backend,
            "tbm": self.tbm,
            "thickness": self.thickness,
            "template_resolution": self.template_resolution,
            "fs_license_file": self.fs_license_file,
            "fs_subjects_dir": self.fs_subjects_dir,
            "synthseg_robust": self.synthseg_robust,
            "synthseg_parc": self.synthseg_parc,
            "seg_models_dir": self.seg_models_dir,
        }


@dataclass(frozen=True)
class RunOptions:
    """Where a run reads and writes, what it selects, and how Nipype runs it."""

    bids_dir: Path
    output_dir: Path
    work_dir: Path
    analysis_level: str = "participant"
    participant_label: tuple[str, ...] | None = None
    session_label: tuple[str, ...] | None = None
    suffixes: tuple[str, ...] = ()
    bids_filter_file: Path | None = None
    bids_database_dir: Path | None = None
    validate: bool = True
    nprocs: int = 1
    omp_nthreads: int = 1
    mem_gb: float | None = None
    use_plugin: Path | None = None
    resource_monitor: bool = False
    stop_on_first_crash: bool = False
    write_graph: bool = False
    dry_run: bool = False
    #: only rewrite the per-subject reports from earlier runs' outputs
    reports_only: bool = False
    verbose_count: int = 0
    #: --model was given (at the group level it then selects that model's volumes)
    model_given: bool = False


@dataclass(frozen=True)
class Settings:
    """Everything a run was asked to do; what ``logs/<run>/settings.json`` records."""

    run: RunOptions
    synthsr: SynthSROptions = field(default_factory=SynthSROptions)
    morphometry: MorphometryOptions = field(default_factory=MorphometryOptions)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True, default=str) + "\n"
