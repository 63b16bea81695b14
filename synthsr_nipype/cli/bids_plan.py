"""``synthsr-bids participant`` before the workflow: the selection and plan, the models it needs, the
derivatives' scaffold (dataset_description.json, .bidsignore, README.md, the plan and the settings), and
why a selection cannot run (as fMRIPrep's ``cli/workflow.py`` prepares what ``cli/run.py`` runs).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_bytes, atomic_write_text
from ..bids.derivatives import (
    PARTICIPANT_BIDSIGNORE,
    write_bidsignore,
    write_dataset_description,
    write_readme,
)
from ..bids.labels import normalize_labels
from ..bids.query import select_scans
from ..errors import SynthSRError
from ..morphometry.derivatives import bidsignore_patterns
from ..settings import SETTINGS_FILE, Settings


def new_run_id() -> str:
    """A run's id: UTC start time and a UUID (the name of its logs/ folder)."""
    return f"{datetime.now(timezone.utc):%Y%m%d-%H%M%S}_{uuid.uuid4()}"


def model_info(model: str, *, required: bool) -> dict[str, Any]:
    """SHA-256, name and architecture of a model; errors become exit codes 2/3."""
    from ..model import load_model

    try:
        net = load_model(model, device="cpu")
    except SynthSRError as exc:
        if required:
            raise
        return {"error": str(exc)}
    return {"sha256": net.sha256, "name": net.name, "arch": dict(net.arch)}


def select(settings: Settings):
    """Layout, query and plan; raises an InputError with one line when nothing can run."""
    from ..bids.plan import DEFAULT_BASE_FEATURES, build_plan
    from ..model.registry import channel_suffixes

    run, model = settings.run, settings.synthsr.model
    selected = select_scans(run.bids_dir, suffixes=run.suffixes, participant_label=run.participant_label,
                            session_label=run.session_label, bids_filter_file=run.bids_filter_file,
                            database_dir=run.bids_database_dir, validate=run.validate)
    models: dict[str, dict[str, Any]] = {}
    in_channels = None
    # a model card that names the channels needs no loading to plan
    if channel_suffixes(model) is None and (not run.dry_run or Path(model).suffix == ".h5"):
        models[model] = model_info(model, required=not run.dry_run)
        in_channels = models[model].get("arch", {}).get("in_channels")
    base = models.get(model, {}).get("arch", {}).get("base_features", DEFAULT_BASE_FEATURES)
    plan = build_plan(
        selected.files,
        bids_dir=run.bids_dir,
        model=model,
        general_model=settings.synthsr.general_model,
        in_channels=in_channels,
        reference_filter=selected.filters.get("reference"),
        base_features=int(base),
        unindexed=selected.unindexed,
    )
    if run.dry_run:  # the error a real run would stop with: only models the plan really uses
        from ..model.registry import resolve_model_path

        for name in dict.fromkeys([model] + [job.model for job in plan.jobs]):
            try:
                resolve_model_path(name)
            except SynthSRError as exc:
                models.setdefault(name, {})["error"] = str(exc)
                models[name]["exit_code"] = exc.exit_code
    return plan, selected.description, models


def write_outputs_scaffold(settings: Settings, plan, log_dir: Path) -> None:
    from ..bids.plan import format_plan

    output_dir = settings.run.output_dir
    write_dataset_description(output_dir, settings.run.bids_dir)
    ignore = list(PARTICIPANT_BIDSIGNORE)
    if settings.morphometry.enabled:  # community suffixes (_morph.tsv, _map.nii.gz), group/
        ignore += bidsignore_patterns()
    write_bidsignore(output_dir, ignore)
    write_readme(output_dir)
    atomic_write_bytes(log_dir / "plan.txt", (format_plan(plan) + "\n").encode())
    atomic_write_text(log_dir / SETTINGS_FILE, settings.to_json())


def nothing_to_run(settings: Settings, plan, selection: str) -> str:
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
    if settings.run.participant_label:
        lacking = [
            sub for sub in normalize_labels(settings.run.participant_label, "sub") or []
            if not any(g.jobs for g in plan.groups if g.subject == sub)
        ]
        if lacking:
            groups = [g for g in plan.groups if g.subject in lacking]
            return (f"participant(s) {', '.join(lacking)} have no usable anatomical scan "
                    f"({selection}){detail(groups)}")
    return ""
