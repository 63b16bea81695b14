"""The settings of a ``synthsr-bids`` run: built and normalised once from the command line,
frozen, passed explicitly (no global), and written to ``logs/<run>/settings.json``.

The rules that turn arguments into settings live here and only here: ``--seg-backend none``
means no backend, ``--tbm`` alone implies the ``ants`` backend, a model file is named by its
absolute path (the same file gives the same cache key from any folder), ``--omp-nthreads``
defaults to ``min(nprocs - 1, 8)``, SynthSR nodes take MultiProc GPU slots when they will run on
a CUDA GPU. Every field is documented where it is declared (as fMRIPrep's ``config``), and
:meth:`Settings.from_json` reads back what :meth:`Settings.to_json` wrote.
"""

from __future__ import annotations

import json
import os
import types
import typing
from dataclasses import asdict, dataclass, field, fields, replace
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
    """``--omp-nthreads`` when not given: one CPU left for the scheduler, at most 8.

    >>> [default_omp_nthreads(n) for n in (1, 2, 4, 32)]
    [1, 1, 3, 8]
    """
    return max(1, min(nprocs - 1, 8))


def uses_gpu(device: str) -> bool:
    """Whether SynthSR nodes will run on a CUDA GPU (then they take MultiProc GPU slots): a named
    CUDA device, or ``auto`` on a machine with one.

    >>> uses_gpu("cuda:1"), uses_gpu("cpu"), uses_gpu("mps")
    (True, False, False)
    """
    if device.startswith("cuda"):
        return True
    if device == "auto":
        import torch  # only here: the settings and the parser load without torch

        return bool(torch.cuda.is_available())
    return False


@dataclass(frozen=True)
class SynthSROptions:
    """How every scan goes through SynthSR and how a group's outputs are fused."""

    model: str = "v2"
    """``--model``: a registry name, or a model file by its absolute path (:func:`model_reference`)."""
    general_model: str = "v2"
    """``--general-model``: the one-channel model for the scans a multi-channel ``model`` cannot take."""
    ct: bool = False
    """``--ct``: the inputs are CT scans in Hounsfield units (clipped to [0, 80])."""
    flip: bool = True
    """Left-right flip test-time augmentation (``--disable-flipping`` turns it off)."""
    sharpen: bool = True
    """Unsharp masking of the output (``--disable-sharpening`` turns it off)."""
    device: str = "auto"
    """``--device``: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``."""
    use_gpu: bool = False
    """SynthSR nodes take a MultiProc GPU slot (:func:`uses_gpu` of ``device``, participant runs only)."""
    fusion_method: str = "median"
    """``--fusion``: how the registered outputs of a group are combined voxel-wise."""
    output_space: str = "1mm"
    """``--output-space``: ``1mm``, or ``native`` (also each output on its input scan's grid)."""


@dataclass(frozen=True)
class MorphometryOptions:
    """Segmentation, volumes and TBM of each fused image (``seg_backend=None``: none); what
    :func:`~synthsr_nipype.workflows.morphometry.init_morphometry_wf` builds."""

    seg_backend: str | None = None
    """``--seg-backend``: ``ants``, ``synthseg``, ``synthseg-fs``, ``recon-all``, ``samseg``, or ``None``
    (no segmentation). ``--tbm`` or ``--thickness`` alone implies ``ants``; at the group level, the backend
    whose volumes are collected (``None``: any)."""
    tbm: bool = False
    """``--tbm``: also the log-Jacobian map of the warp to MNI152NLin2009aSym."""
    thickness: bool = False
    """``--thickness``: also cortical thickness (DiReCT) from the posteriors of the ``ants`` or ``synthseg``
    backend."""
    thickness_iterations: int | None = None
    """``--thickness-iterations``: DiReCT's iterations (``None``: antsCorticalThickness.sh's 45)."""
    template_resolution: int = 1
    """``--template-resolution``: the template grid in mm (1 or 2) of the ``ants`` backend and TBM."""
    fs_license_file: str | None = None
    """``--fs-license-file``: FreeSurfer's licence (else ``$FS_LICENSE``, then ``$FREESURFER_HOME``)."""
    fs_subjects_dir: str | None = None
    """``--fs-subjects-dir``: ``SUBJECTS_DIR`` of recon-all, absolute (``None``: inside the work folder)."""
    synthseg_robust: bool = True
    """``--synthseg-robust``: SynthSeg-robust for ``synthseg`` and ``synthseg-fs``."""
    synthseg_parc: bool = False
    """``--synthseg-parc``: SynthSeg's cortical parcellation."""
    seg_models_dir: str | None = None
    """``--seg-models-dir``: the folder of the ``synthseg_*.h5`` weights, absolute (``None``: the registry's)."""

    def __post_init__(self) -> None:
        backend = backend_or_none(self.seg_backend) or ("ants" if self.tbm or self.thickness else None)
        object.__setattr__(self, "seg_backend", backend)

    @property
    def enabled(self) -> bool:
        return self.seg_backend is not None


@dataclass(frozen=True)
class RunOptions:
    """Where a run reads and writes, what it selects, and how Nipype runs it."""

    bids_dir: Path
    """The BIDS dataset, resolved."""
    output_dir: Path
    """The derivatives dataset, absolute."""
    work_dir: Path
    """``-w``: Nipype's working folder (node caches), absolute."""
    analysis_level: str = "participant"
    """``participant`` or ``group``."""
    participant_label: tuple[str, ...] | None = None
    """``--participant-label``, without ``sub-`` (``None``: every subject)."""
    session_label: tuple[str, ...] | None = None
    """``--session-label``, without ``ses-`` (``None``: every session)."""
    suffixes: tuple[str, ...] = ()
    """``--suffixes``: the BIDS suffixes of the anatomical scans to process."""
    bids_filter_file: Path | None = None
    """``--bids-filter-file``: PyBIDS filters of the selection."""
    bids_database_dir: Path | None = None
    """``--bids-database-dir``: PyBIDS' index, kept between runs, absolute."""
    validate: bool = True
    """Run the BIDS validator first (``--skip-bids-validation`` turns it off)."""
    nprocs: int = 1
    """``--nprocs``: CPUs for all nodes together."""
    omp_nthreads: int = 1
    """``--omp-nthreads`` (default :func:`default_omp_nthreads`): threads per node, for SynthSR, SynthSeg
    and FreeSurfer, and for ANTs when the morphometry is not deterministic."""
    mem_gb: float | None = None
    """``--mem-gb``: MultiProc's memory limit (``None``: Nipype's default)."""
    use_plugin: Path | None = None
    """``--use-plugin``: a YAML file of Nipype plugin settings."""
    resource_monitor: bool = False
    """``--resource-monitor``: record each node's CPU and memory in ``logs/<run>/``."""
    stop_on_first_crash: bool = False
    """``--stop-on-first-crash``: stop at the first failed node."""
    write_graph: bool = False
    """``--write-graph``: also write the workflow graph to ``logs/``."""
    dry_run: bool = False
    """``--dry-run``: print the plan and exit, writing nothing."""
    reports_only: bool = False
    """``--reports-only``: only rewrite the per-subject reports from earlier runs' outputs."""
    verbose_count: int = 0
    """How many ``-v`` (:func:`log_level`)."""
    model_given: bool = False
    """``--model`` was given (at the group level it then selects that model's volumes)."""


#: the file in ``logs/<run>/`` that records a run's settings (:meth:`Settings.to_json`)
SETTINGS_FILE = "settings.json"


@dataclass(frozen=True)
class Settings:
    """Everything a run was asked to do; what ``logs/<run>/settings.json`` records."""

    run: RunOptions
    """Paths, selection and execution."""
    synthsr: SynthSROptions = field(default_factory=SynthSROptions)
    """SynthSR and fusion."""
    morphometry: MorphometryOptions = field(default_factory=MorphometryOptions)
    """Segmentation, volumes, TBM and thickness."""

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True, default=str) + "\n"

    def with_outputs_of(self, earlier: Settings) -> Settings:
        """This command's paths, selection and execution, with what ``earlier`` was asked to make (its SynthSR
        and morphometry options, suffixes and filters, which decide the outputs and their names): how
        ``--reports-only`` describes an earlier run's outputs whatever options it is given itself."""
        run = replace(self.run, suffixes=earlier.run.suffixes, bids_filter_file=earlier.run.bids_filter_file,
                      model_given=earlier.run.model_given)
        return replace(self, run=run, synthsr=earlier.synthsr, morphometry=earlier.morphometry)

    @classmethod
    def from_json(cls, text: str) -> Settings:
        """The settings :meth:`to_json` wrote (``logs/<run>/settings.json``): paths become
        :class:`~pathlib.Path` and lists tuples again, as the fields declare; keys this version does
        not know are left out (a file from another version)."""
        data = json.loads(text)
        return cls(run=_from_dict(RunOptions, data["run"]),
                   synthsr=_from_dict(SynthSROptions, data.get("synthsr", {})),
                   morphometry=_from_dict(MorphometryOptions, data.get("morphometry", {})))


def _from_dict(cls: type, data: dict[str, Any]) -> Any:
    hints = typing.get_type_hints(cls)
    return cls(**{f.name: _as_declared(hints[f.name], data[f.name]) for f in fields(cls) if f.name in data})


def _as_declared(hint: Any, value: Any) -> Any:
    """A JSON value as its field's type: ``Path`` and ``tuple`` (also inside ``X | None``)."""
    if value is None:
        return None
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
    if hint is Path:
        return Path(value)
    if typing.get_origin(hint) is tuple:
        return tuple(value)
    return value
