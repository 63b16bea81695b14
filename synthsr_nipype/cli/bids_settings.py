"""``synthsr-bids``' parsed arguments -> the run's frozen :class:`~synthsr_nipype.settings.Settings`
(the parser itself is :mod:`.bids_parser`; the rules the settings follow are :mod:`synthsr_nipype.settings`'s)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import InputError, UsageError
from ..morphometry import MIN_DIRECT_ITERATIONS, THICKNESS_BACKENDS
from ..settings import (
    SETTINGS_FILE,
    MorphometryOptions,
    RunOptions,
    Settings,
    SynthSROptions,
    default_omp_nthreads,
    model_reference,
    uses_gpu,
)
from .bids_parser import DefaultStr


def settings_from_args(args: argparse.Namespace) -> Settings:
    """The run's frozen settings from the parsed arguments (the rules are in
    :mod:`synthsr_nipype.settings`; ``args`` is left as it is)."""
    participant = args.analysis_level == "participant"
    device = str(args.device)
    use_gpu = participant and not args.dry_run and uses_gpu(device)
    run = RunOptions(
        bids_dir=Path(args.bids_dir).resolve(),
        output_dir=Path(args.output_dir).absolute(),
        work_dir=Path(args.work_dir).absolute(),
        analysis_level=args.analysis_level,
        participant_label=tuple(args.participant_label) if args.participant_label else None,
        session_label=tuple(args.session_label) if args.session_label else None,
        suffixes=tuple(args.suffixes),
        bids_filter_file=args.bids_filter_file,
        bids_database_dir=_absolute(args.bids_database_dir),
        validate=not args.skip_bids_validation,
        nprocs=args.nprocs,
        omp_nthreads=args.omp_nthreads or default_omp_nthreads(args.nprocs),
        mem_gb=args.mem_gb,
        use_plugin=args.use_plugin,
        resource_monitor=args.resource_monitor,
        stop_on_first_crash=args.stop_on_first_crash,
        write_graph=args.write_graph,
        dry_run=args.dry_run,
        reports_only=args.reports_only,
        verbose_count=args.verbose_count,
        model_given=not isinstance(args.model, DefaultStr),
    )
    synthsr = SynthSROptions(
        model=model_reference(args.model) if participant else str(args.model),
        general_model=model_reference(args.general_model),
        ct=args.ct,
        flip=not args.disable_flipping,
        sharpen=not args.disable_sharpening,
        device=device,
        use_gpu=use_gpu,
        fusion_method=args.fusion,
        output_space=args.output_space,
    )
    if participant and args.thickness and args.seg_backend not in ("none", *THICKNESS_BACKENDS):
        raise UsageError(f"--thickness needs the GM/WM posteriors of --seg-backend "
                         f"{' or '.join(THICKNESS_BACKENDS)}, not {args.seg_backend}")
    if participant and args.thickness_iterations and not args.thickness:
        raise UsageError("--thickness-iterations needs --thickness")
    if participant and args.thickness_iterations and args.thickness_iterations < MIN_DIRECT_ITERATIONS:
        raise UsageError(f"--thickness-iterations must be at least {MIN_DIRECT_ITERATIONS}: with fewer, DiReCT "
                         "gives no thickness")
    if participant:
        morphometry = MorphometryOptions(
            seg_backend=args.seg_backend,
            tbm=args.tbm,
            thickness=args.thickness,
            thickness_iterations=args.thickness_iterations,
            template_resolution=args.template_resolution,
            fs_license_file=str(args.fs_license_file) if args.fs_license_file else None,
            fs_subjects_dir=str(_absolute(args.fs_subjects_dir)) if args.fs_subjects_dir else None,
            synthseg_robust=args.synthseg_robust,
            synthseg_parc=args.synthseg_parc,
            seg_models_dir=str(_absolute(args.seg_models_dir)) if args.seg_models_dir else None,
        )
    else:  # the group level selects volumes by backend; --tbm has nothing to imply there
        morphometry = MorphometryOptions(seg_backend=args.seg_backend)
    return Settings(run=run, synthsr=synthsr, morphometry=morphometry)


def _absolute(path: Path | None) -> Path | None:
    return None if path is None else Path(path).absolute()


def earlier_run_settings(settings: Settings) -> Settings:
    """``--reports-only``: this command's settings with the options the newest earlier run recorded in its
    ``logs/<run>/settings.json`` (a run from before that file existed: this command's own options)."""
    from ..reports.subject import latest_run_dir

    earlier = latest_run_dir(settings.run.output_dir)
    if earlier is None:
        raise InputError(f"--reports-only: no earlier run in {settings.run.output_dir} (no logs/<run>/run.json)")
    recorded = earlier / SETTINGS_FILE
    if not recorded.is_file():
        return settings
    try:
        previous = Settings.from_json(recorded.read_text())
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{recorded}: cannot be read as the settings of that run ({exc})") from None
    if (previous.synthsr, previous.morphometry) != (settings.synthsr, settings.morphometry):
        print(f"NOTE: --reports-only describes the outputs of the run in {earlier}: its options "
              f"(model {previous.synthsr.model}, segmentation {previous.morphometry.seg_backend or 'none'}) "
              "are used, not this command's", file=sys.stderr)
    return settings.with_outputs_of(previous)
