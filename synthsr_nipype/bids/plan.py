"""The plan: per group, which scans run through which model, the reference, what is skipped.

The plan is computed once, before the graph is built (the graph's shape depends on it),
and is what ``--dry-run`` prints.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..inference.memory import estimate_memory_gb, estimate_threads
from ..model.registry import channel_suffixes, model_label
from ..model.spec import PAD_MULTIPLE, published_spec
from .derivatives import (
    build_derivative_relpath,
    fused_output_entities,
    reference_space_label,
    scan_output_entities,
    scan_xfm_entities,
)
from .grouping import Group, choose_reference, group_scans, reference_sort_key
from .labels import group_label, safe_name
from .scan import ScanInfo, describe_scan

#: Features of the first level of the released SynthSR models (used for memory estimates).
DEFAULT_BASE_FEATURES = 24


def padded_1mm_shape(scan: ScanInfo) -> list[int]:
    """Shape of the scan resampled to 1 mm and padded for the network."""
    return [int(math.ceil(max(f, 1.0) / PAD_MULTIPLE) * PAD_MULTIPLE) for f in scan.fov_mm]


def estimate_mem_gb(shape: Sequence[int], base_features: int = DEFAULT_BASE_FEATURES) -> float:
    """Peak memory of one SynthSR inference (GB) from the padded 1 mm shape: the Nipype node's ``mem_gb``.

    Delegates to the inference cost model (:func:`synthsr_nipype.inference.memory.estimate_memory_gb`), which
    follows the network's actual evaluation order (slabs, skips) and is checked against measured peaks.
    """
    padded = tuple(int(s) for s in shape)
    return round(estimate_memory_gb(padded, published_spec(base_features)), 2)


def estimate_n_procs(shape: Sequence[int], base_features: int = DEFAULT_BASE_FEATURES) -> int:
    """Threads worth giving one SynthSR inference (the Nipype node's ``n_procs`` cap), from the padded
    1 mm shape: the cost model's :func:`~synthsr_nipype.inference.memory.estimate_threads` (small networks on
    small volumes gain nothing from more threads, so they leave MultiProc slots to other nodes)."""
    padded = tuple(int(s) for s in shape)
    return estimate_threads(padded, published_spec(base_features), available=1 << 10)


@dataclass
class Job:
    """One SynthSR inference: channel images in, one 1 mm synthetic T1w out."""

    name: str  # node-safe identifier, unique in its group
    inputs: list[str]  # absolute paths, one per channel
    sources: list[str]  # paths relative to the BIDS root, one per channel
    suffixes: list[str]
    model: str
    entities: dict[str, str]  # output entities
    out_relpath: str
    shape_1mm: list[int] = field(default_factory=list)
    mem_gb: float = 1.0
    n_procs: int = 1  # threads worth giving it (capped by --omp-nthreads in the workflow)
    #: per channel: BIDS SliceThickness (mm, 0 unknown) and SliceEncodingDirection ("" unknown)
    slice_thickness: list[float] = field(default_factory=list)
    slice_direction: list[str] = field(default_factory=list)


@dataclass
class GroupPlan:
    subject: str
    session: str | None
    jobs: list[Job] = field(default_factory=list)
    reference: str | None = None  # relpath of the reference scan
    reference_job: int | None = None  # index in jobs of the job whose output is the reference
    reference_reason: str = ""
    fused_entities: dict[str, str] = field(default_factory=dict)
    fused_relpath: str | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (relpath, reason)
    notes: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return group_label(self.subject, self.session)

    @property
    def workflow_name(self) -> str:
        """The name of the group's workflow (``single_subject_<sub>[_<ses>]_wf``), which its nodes'
        names and crash files start with."""
        session = f"_{safe_name(self.session)}" if self.session else ""
        return f"single_subject_{safe_name(self.subject)}{session}_wf"

    @property
    def registered_jobs(self) -> list[int]:
        """Indices of the jobs registered onto the reference's synthetic image: every job but the
        reference, none in a single-scan group (an identity transform says nothing)."""
        if len(self.jobs) < 2:
            return []
        return [i for i in range(len(self.jobs)) if i != (self.reference_job or 0)]

    def xfm_entities(self, index: int) -> dict[str, str]:
        """Entities of job ``index``'s transform onto the reference's synthetic image."""
        ref = self.reference_job or 0
        others = [job.entities for i, job in enumerate(self.jobs) if i != ref]
        return scan_xfm_entities(self.jobs[index].entities, reference_space_label(self.jobs[ref].entities, others))

    def xfm_relpath(self, index: int) -> str:
        """Path of job ``index``'s transform onto the reference's synthetic image (ITK text)."""
        return build_derivative_relpath(self.xfm_entities(index), extension=".txt")


@dataclass
class Plan:
    bids_dir: str
    model: str
    general_model: str
    groups: list[GroupPlan] = field(default_factory=list)

    @property
    def jobs(self) -> list[Job]:
        return [job for group in self.groups for job in group.jobs]

    @property
    def runnable_groups(self) -> list[GroupPlan]:
        return [g for g in self.groups if g.jobs]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _node_name(scan: ScanInfo, entities: Mapping[str, str]) -> str:
    # Nipype node names must be identifiers; BIDS labels are alphanumeric, so this is unique.
    parts = [f"{k[:3]}_{v}" for k, v in entities.items() if k not in ("subject", "session")]
    return "_".join(parts + [scan.suffix]) or scan.suffix


def _job(scans: Sequence[ScanInfo], model: str, base_features: int) -> Job:
    suffixes = [s.suffix for s in scans]
    if len(scans) == 1:
        source = scans[0].entities
    else:  # several channels: keep the entities the channels share
        source = {
            k: v for k, v in scans[0].entities.items() if all(s.entities.get(k) == v for s in scans)
        }
    entities = scan_output_entities(source, "".join(suffixes))
    shape = padded_1mm_shape(min(scans, key=reference_sort_key))
    return Job(
        name=_node_name(scans[0], source) if len(scans) == 1 else "multi_" + "".join(suffixes),
        inputs=[s.path for s in scans],
        sources=[s.relpath for s in scans],
        suffixes=suffixes,
        model=model,
        entities=entities,
        out_relpath=build_derivative_relpath(entities),
        shape_1mm=shape,
        mem_gb=estimate_mem_gb(shape, base_features),
        n_procs=estimate_n_procs(shape, base_features),
        slice_thickness=[s.slice_thickness or 0.0 for s in scans],
        slice_direction=[s.slice_direction or "" for s in scans],
    )


def plan_group(
    group: Group,
    *,
    model: str = "v2",
    general_model: str = "v2",
    in_channels: int | None = None,
    reference_filter: Mapping[str, Any] | None = None,
    base_features: int = DEFAULT_BASE_FEATURES,
) -> GroupPlan:
    """Plan one group: jobs (multi-channel first, then one per remaining scan), reference."""
    gplan = GroupPlan(subject=group.subject, session=group.session)
    gplan.skipped = [(s.relpath, s.reason) for s in group.skipped]
    scans = list(group.scans)
    channels = channel_suffixes(model, in_channels)
    jobs: list[Job] = []
    if channels:
        picked: list[ScanInfo] = []
        for suffix in channels:
            candidates = [s for s in scans if s.suffix == suffix and s not in picked]
            if candidates:
                picked.append(min(candidates, key=reference_sort_key))
        if len(picked) == len(channels):
            jobs.append(_job(picked, model, base_features))
            scans = [s for s in scans if s not in picked]
        else:
            gplan.notes.append(
                f"model {model_label(model)} needs {'+'.join(channels)}; group lacks "
                f"{'+'.join(c for c in channels if c not in {p.suffix for p in picked})}: "
                f"all scans use {general_model}"
            )
        single_model = general_model
    else:
        single_model = model
    for scan in scans:
        jobs.append(_job([scan], single_model, base_features))

    # Two files with the same entities (e.g. .nii and .nii.gz) would write the same output.
    seen: dict[str, Job] = {}
    for job in jobs:
        if job.out_relpath in seen:
            gplan.skipped.append(
                (job.sources[0], f"same entities as {seen[job.out_relpath].sources[0]}")
            )
            continue
        seen[job.out_relpath] = job
    gplan.jobs = list(seen.values())

    reference, why = choose_reference(group.scans, reference_filter)
    gplan.reference_reason = why
    if reference is not None:
        gplan.reference = reference.relpath
        for index, job in enumerate(gplan.jobs):
            if reference.relpath in job.sources:
                gplan.reference_job = index
                break
        if gplan.reference_job is None and gplan.jobs:  # reference was a dropped duplicate
            gplan.reference_job = 0
    if gplan.jobs:
        gplan.fused_entities = fused_output_entities(group.subject, group.session)
        gplan.fused_relpath = build_derivative_relpath(gplan.fused_entities)
    return gplan


def _relpath(path: Path, root: Path) -> str:
    """``path`` relative to the dataset root; a symbolic link is named by itself, not its target."""
    for candidate in (Path(os.path.abspath(path)), path.resolve()):
        if candidate.is_relative_to(root):
            return candidate.relative_to(root).as_posix()
    return path.name


def build_plan(
    bids_files: Sequence[Any],
    *,
    bids_dir: str | Path,
    model: str = "v2",
    general_model: str = "v2",
    in_channels: int | None = None,
    reference_filter: Mapping[str, Any] | None = None,
    base_features: int = DEFAULT_BASE_FEATURES,
    unindexed: Sequence[tuple[str | Path, str]] = (),
) -> Plan:
    """Describe, group and plan the pybids files of a query (see :func:`collect_anat`).

    ``unindexed``: (path, reason) of entries pybids did not index
    (:func:`~synthsr_nipype.bids.query.unindexed_scans`), listed as skipped in their group."""
    root = Path(bids_dir).resolve()
    scans = []
    for bids_file in bids_files:
        path = Path(bids_file.path)
        scans.append(
            describe_scan(
                path,
                entities=bids_file.get_entities(),
                relpath=_relpath(path, root),
            )
        )
    plan = Plan(bids_dir=str(root), model=model, general_model=general_model)
    for group in group_scans(scans):
        plan.groups.append(
            plan_group(
                group,
                model=model,
                general_model=general_model,
                in_channels=in_channels,
                reference_filter=reference_filter,
                base_features=base_features,
            )
        )
    for path, reason in unindexed:
        rel = Path(_relpath(Path(path), root))
        labels = {part.split("-", 1)[0]: part.split("-", 1)[1] for part in rel.parts[:-1] if "-" in part}
        subject, session = labels.get("sub", "?"), labels.get("ses")
        group = next((g for g in plan.groups if g.subject == subject and g.session == session), None)
        if group is None:
            group = GroupPlan(subject=subject, session=session)
            plan.groups.append(group)
        group.skipped.append((rel.as_posix(), reason))
    return plan


def skipped_scans(plan: Plan) -> list[tuple[str, str]]:
    """(path relative to the dataset, reason) of every selected scan the plan does not process."""
    return [item for group in plan.groups for item in group.skipped]


def scan_warnings(plan: Plan) -> list[tuple[str, str]]:
    """(path relative to the dataset, note) for every header oddity of a scan the plan processes
    anyway (:func:`~synthsr_nipype.inference.checks.header_warnings`; headers only, cheap)."""
    from ..inference.checks import header_warnings

    seen: dict[str, None] = {}
    for job in plan.jobs:
        for path, relpath in zip(job.inputs, job.sources):
            seen.setdefault((path, relpath))
    return [(relpath, note) for path, relpath in seen for note in header_warnings(path)]


def format_plan(plan: Plan) -> str:
    """The plan as text, for ``--dry-run`` and the log."""
    n_jobs = len(plan.jobs)
    n_skip = sum(len(g.skipped) for g in plan.groups)
    lines = [
        f"SynthSR BIDS-App plan for {plan.bids_dir}",
        f"model: {plan.model}" + (f" (other scans: {plan.general_model})"
                                  if any(j.model != plan.model for j in plan.jobs) else ""),
        f"{len(plan.groups)} group(s); {n_jobs} SynthSR run(s); "
        f"{len(plan.runnable_groups)} fused output(s); {n_skip} scan(s) skipped",
    ]
    for g in plan.groups:
        lines.append("")
        ref = Path(g.reference).name if g.reference else "none"
        lines.append(f"{g.label}: {len(g.jobs)} run(s), reference {ref} ({g.reference_reason})")
        for job in g.jobs:
            src = " + ".join(Path(s).name for s in job.sources)
            shape = "x".join(str(s) for s in job.shape_1mm)
            lines.append(
                f"  run  {src} [{'+'.join(job.suffixes)}, model {model_label(job.model)}, "
                f"1 mm grid padded {shape}, ~{job.mem_gb:g} GB] -> {job.out_relpath}"
            )
        if g.jobs:
            how = "pass-through (one scan)" if len(g.jobs) == 1 else (
                f"rigid registration to the reference output, voxel-wise median of {len(g.jobs)}"
            )
            lines.append(f"  fuse {how} -> {g.fused_relpath}")
            for index in g.registered_jobs:
                lines.append(f"  xfm  {Path(g.jobs[index].out_relpath).name} -> {g.xfm_relpath(index)}")
        else:
            lines.append("  nothing to run: no usable scan in this group")
        for relpath, reason in g.skipped:
            lines.append(f"  skip {Path(relpath).name}: {reason}")
        for note in g.notes:
            lines.append(f"  note {note}")
    return "\n".join(lines)
