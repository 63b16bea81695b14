"""The per-subject report ``output_dir/sub-<label>.html``, with its SVG reportlets in ``sub-<label>/figures/``.

It follows the nipreps report conventions (one page per subject at the root of the derivatives, BIDS-named
reportlets under ``figures/``, sections per session and per run, methods boilerplate, errors, provenance) and is
built from what a run left on disk, so ``synthsr-bids --reports-only`` rebuilds it without running anything:
the plan says which scans belong to each subject/session and why others were skipped, the derivatives and
their sidecars give the images, models and transforms, the run's log folder the crash files, the command
line and the plugin, and the work folder the run time of each node.

The page is self-contained apart from its figures (relative links, no network) and checks itself when opened:
a figure that does not load is replaced by a note naming the missing file, and the counts of figures loaded
and broken and of script errors are written on ``<body>`` for the browser test.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from ..atomic import atomic_write_bytes
from ..bids.labels import group_label
from ..bids.plan import GroupPlan, Job, Plan
from ..crashes import read_crashes
from ..inference.fusion import REGISTRATION_TARGET
from ..morphometry.volumetry import format_ml
from .methods import methods_html

RUN_RECORD = "run.json"
TEMPLATE = Path(__file__).parent / "data" / "subject.html"


# ----------------------------------------------------------------------------- what a run records
def record_run(log_dir: str | os.PathLike[str], *, argv: Sequence[str], plugin: str,
               plugin_args: dict[str, Any] | None = None, finished: bool = False) -> Path:
    """Write ``log_dir/run.json``: the command line and the plugin (the report's provenance)."""
    from .. import __version__

    path = Path(log_dir) / RUN_RECORD
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        record = {"started": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    record.update({"version": __version__, "command": list(argv), "plugin": plugin,
                   "plugin_args": {k: v for k, v in (plugin_args or {}).items() if _jsonable(v)}})
    if finished:
        record["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return atomic_write_bytes(path, json.dumps(record, indent=1).encode())


def _jsonable(value: object) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def latest_run_dir(output_dir: str | os.PathLike[str]) -> Path | None:
    """The newest ``logs/<run>/`` that has a run record (run folders start with their UTC time)."""
    runs = sorted(p.parent for p in (Path(output_dir) / "logs").glob(f"*/{RUN_RECORD}"))
    return runs[-1] if runs else None


# ----------------------------------------------------------------------------- facts
@dataclass
class Figure:
    src: str  # relative to output_dir (the page's folder)
    caption: str
    legend: list[tuple[str, str]] = field(default_factory=list)  # (name, colour) of its contours


@dataclass
class ScanSection:
    title: str
    sources: list[str]
    facts: list[tuple[str, str]]
    notes: list[str]
    figures: list[Figure] = field(default_factory=list)
    absent: list[str] = field(default_factory=list)  # what was not produced, and why
    model_notes: str | None = None  # the sidecar's ModelNotes: shown as a banner atop the page


@dataclass
class GroupSection:
    label: str
    title: str
    scans: list[ScanSection]
    fused: list[Figure]
    absent: list[str]
    volumes: tuple[list[str], list[list[str]]] | None
    thickness: tuple[list[str], list[list[str]]] | None
    skipped: list[tuple[str, str]]
    errors: list[tuple[str, str, str]]  # node, error line, crash file (relative to output_dir)
    runtimes: list[tuple[str, str]]
    segmentation_qc: SegmentationQC | None = None


@dataclass
class SegmentationQC:
    """SynthSeg's QC scores of a segmentation (its sidecar's ``SynthSegQC``) and the groups they flag."""

    source: str  # the segmentation's file name
    threshold: float
    scores: list[tuple[str, str, bool]]  # (structure group, score, below the threshold)
    flags: list[str]


def segmentation_qc(dseg: Path) -> SegmentationQC | None:
    """The QC section of a segmentation whose sidecar has SynthSeg's scores (``--seg-backend synthseg``,
    ``synthseg-fs``); flagged by :func:`synthsr_nipype.segmentation.quality.flagged_groups`."""
    from ..segmentation.quality import QC_THRESHOLD, flagged_groups, qc_flags

    scores = _sidecar(dseg).get("SynthSegQC")
    if not isinstance(scores, dict) or not scores:
        return None
    flagged = set(flagged_groups(scores))
    return SegmentationQC(source=dseg.name, threshold=QC_THRESHOLD,
                          scores=[(str(k), "n/a" if v is None else f"{float(v):.4f}", k in flagged)
                                  for k, v in scores.items()],
                          flags=qc_flags(scores))


def header_facts(path: str | os.PathLike[str]) -> tuple[list[tuple[str, str]], list[str]]:
    """Grid, voxel size, orientation code and header notes of one input image."""
    from ..inference.checks import header_problem, header_warnings

    image = nib.load(path)
    zooms = [float(z) for z in nib.affines.voxel_sizes(image.affine)[:3]]  # what places the image
    facts = [
        ("grid", " × ".join(str(n) for n in image.shape)),
        ("voxel size (mm)", " × ".join(f"{z:.3g}" for z in zooms)),
        ("orientation", "".join(nib.aff2axcodes(image.affine))),
        ("qform / sform code", f"{int(image.header['qform_code'])} / {int(image.header['sform_code'])}"
         if "qform_code" in image.header else "n/a"),
    ]
    notes = []
    problem = header_problem(path)
    if problem:
        notes.append(problem)
    notes += header_warnings(path)
    obliquity = float(np.degrees(np.max(np.abs(nib.affines.obliquity(image.affine)))))
    if obliquity > 1:
        notes.append(f"oblique acquisition ({obliquity:.1f}° from the nearest axis)")
    if max(zooms) / max(min(zooms), 1e-6) > 2.5:
        notes.append(f"thick slices: {max(zooms):.3g} mm through-plane, {min(zooms):.3g} mm in-plane")
    return facts, notes


def _stem(relpath: str) -> str:
    return Path(relpath).name.removesuffix(".nii.gz").removesuffix(".nii")


def _figure_name(job: Job, kind: str) -> str:
    """``sub-01_acq-ax_desc-synthsrT1w_T1w`` -> ``sub-01_acq-ax_desc-<kind>T1w_T1w.svg``."""
    return _stem(job.out_relpath).replace("_desc-synthsr", f"_desc-{kind}", 1) + ".svg"


def _sidecar(image: Path) -> dict[str, Any]:
    try:
        return json.loads(image.with_name(_stem(image.name) + ".json").read_text())
    except (OSError, ValueError):
        return {}


def _scan_section(output_dir: Path, figures_dir: Path, group: GroupPlan, job: Job) -> ScanSection:
    from . import reportlets

    rel = lambda p: p.relative_to(output_dir).as_posix()  # noqa: E731
    section = ScanSection(title=", ".join(Path(s).name for s in job.sources), sources=list(job.sources),
                          facts=[], notes=[])
    for channel, (path, suffix) in enumerate(zip(job.inputs, job.suffixes)):
        prefix = f"{suffix}: " if len(job.inputs) > 1 else ""
        name = _figure_name(job, f"input{channel}" if len(job.inputs) > 1 else "input")
        try:
            facts, notes = header_facts(path)
            reportlets.plot_views(path, figures_dir / name, f"input {Path(path).name} (native grid)")
        except (OSError, ValueError, EOFError) as exc:  # unreadable when processed: its error is in Errors
            section.absent.append(f"{prefix}cannot read the input {Path(path).name}: {exc}")
            continue
        section.facts += [(prefix + k, v) for k, v in facts]
        section.notes += [prefix + n for n in notes]
        section.figures.append(Figure(rel(figures_dir / name), f"Input {suffix} at its native resolution."))
    output = output_dir / job.out_relpath
    if not output.is_file():
        section.absent.append(f"no SynthSR output ({job.out_relpath}): see Errors")
        return section
    sidecar = _sidecar(output)
    meta = sidecar.get("Model", {})
    section.model_notes = sidecar.get("ModelNotes") if isinstance(sidecar.get("ModelNotes"), str) else None
    section.facts += [("model", str(meta.get("Name", "?"))), ("model SHA-256", str(meta.get("SHA256", "?")))]
    reportlets.plot_views(output, figures_dir / _figure_name(job, "synthsr"), "SynthSR output (1 mm)")
    section.figures.append(Figure(rel(figures_dir / _figure_name(job, "synthsr")), "SynthSR output, 1 mm."))
    reportlets.plot_outline(output, job.inputs[0], figures_dir / _figure_name(job, "outline"))
    section.figures.append(Figure(rel(figures_dir / _figure_name(job, "outline")),
                                  "The input's outline (red) over the output: they must coincide."))
    qc = _reliability(output_dir, figures_dir, output, job.entities, _figure_name(job, "reliability"))
    section.figures += [qc.figure] if qc.figure else []
    section.facts += qc.facts
    section.notes += qc.flags
    section.absent += qc.absent
    index = group.jobs.index(job)
    reference = output_dir / group.jobs[group.reference_job or 0].out_relpath
    if len(group.jobs) > 1 and index not in group.registered_jobs:
        section.facts.append(("registration", "none: the group's reference scan (the others were "
                                              "registered onto its synthetic image)"))
    elif index in group.registered_jobs:
        xfm = output_dir / group.xfm_relpath(index)
        if reference.is_file() and xfm.is_file():
            reportlets.plot_registration(reference, output, xfm, figures_dir / _figure_name(job, "registration"))
            section.figures.append(Figure(rel(figures_dir / _figure_name(job, "registration")),
                                          f"Registration onto {REGISTRATION_TARGET} ({reference.name}, whose "
                                          f"grid the fused image shares) with {xfm.name}."))
        else:
            section.absent.append(f"no registration figure: {xfm.name} or {reference.name} is missing")
    return section


@dataclass
class ReliabilityFacts:
    figure: Figure | None
    facts: list[tuple[str, str]]
    flags: list[str]  # the QC thresholds crossed (docs/qc.md)
    absent: list[str]


def _reliability(output_dir: Path, figures_dir: Path, image: Path, entities: dict, name: str) -> ReliabilityFacts:
    """An image's reliability map drawn over it, its QC numbers and flags (from its sidecar)."""
    from ..bids.derivatives import build_derivative_relpath, reliability_entities
    from . import reportlets

    target = output_dir / build_derivative_relpath(reliability_entities(entities))
    if not target.is_file():
        return ReliabilityFacts(None, [], [], [f"no reliability map ({target.name})"])
    reportlets.plot_reliability(image, target, figures_dir / name)
    figure = Figure((figures_dir / name).relative_to(output_dir).as_posix(),
                    f"Reliability ({target.name}): red where the output is the network's prior, green where it "
                    "was measured and both passes agree (docs/qc.md).")
    meta = _sidecar(image)
    facts = [(f"QC {key}", str(value)) for key, value in meta.get("ReliabilityQC", {}).items() if value is not None]
    return ReliabilityFacts(figure, facts, [f"QC flag: {flag}" for flag in meta.get("QCFlags", [])], [])


def _volumes(output_dir: Path, group: GroupPlan) -> tuple[tuple[list[str], list[list[str]]] | None, Path | None]:
    """The group's volume table (volumes in mL, as the group page and figures show them) and its dseg."""
    anat = (output_dir / group.fused_relpath).parent if group.fused_relpath else None
    if anat is None:
        return None, None
    prefix = Path(group.fused_relpath).name.split("_desc-")[0]
    tables = sorted(anat.glob(f"{prefix}_seg-*_desc-volume_morph.tsv"))
    dsegs = sorted(anat.glob(f"{prefix}_seg-*_dseg.nii.gz"))
    if not tables:
        return None, dsegs[0] if dsegs else None
    lines = [line.split("\t") for line in tables[0].read_text().splitlines() if line.strip()]
    header, rows = lines[0], lines[1:]
    if "volume-mm3" in header:
        column = header.index("volume-mm3")
        header = [*header[:column], "volume (mL)", *header[column + 1:]]
        rows = [[*row[:column], _ml(row[column]), *row[column + 1:]] for row in rows]
    return (header, rows), (dsegs[0] if dsegs else None)


def _thickness(output_dir: Path, group: GroupPlan) -> tuple[list[str], list[list[str]]] | None:
    """The group's cortical thickness table (``--thickness``): region, mean thickness in mm."""
    if not group.fused_relpath:
        return None
    prefix = Path(group.fused_relpath).name.split("_desc-")[0]
    tables = sorted((output_dir / group.fused_relpath).parent.glob(f"{prefix}_seg-*_desc-thickness_morph.tsv"))
    if not tables:
        return None
    lines = [line.split("\t") for line in tables[0].read_text().splitlines() if line.strip()]
    header = lines[0]
    keep = [header.index(c) for c in ("name", "thickness-mm") if c in header]
    return [header[i] for i in keep], [[row[i] for i in keep] for row in lines[1:]]


def _ml(cell: str) -> str:
    try:
        return format_ml(float(cell))
    except ValueError:  # n/a
        return cell


def _tbm_figure(output_dir: Path, figures_dir: Path, group: GroupPlan) -> Figure | None:
    """The log-Jacobian map of ``--tbm`` over the template, when the run made one."""
    from ..morphometry.derivatives import derivative_names
    from . import reportlets

    if not group.fused_relpath:
        return None
    name = derivative_names(group.subject, group.session, "ants")["logjacobian"]  # same for every backend
    path = (output_dir / group.fused_relpath).parent / name
    if not path.is_file():
        return None
    description = _sidecar(path).get("Description", "log det Jacobian")
    template = None
    try:
        from ..morphometry.templates import get_template

        resolution = int(round(float(nib.load(path).header.get_zooms()[0])))
        template = get_template(resolution).t1w if resolution in (1, 2) else None
    except (OSError, ValueError, ImportError):  # the map alone still shows the pattern
        template = None
    svg = figures_dir / (_stem(name) + ".svg")
    reportlets.plot_logjacobian(path, template, svg, "log det Jacobian")
    return Figure(svg.relative_to(output_dir).as_posix(), f"Tensor-based morphometry: {name}: {description}.")


def _errors(log_dir: Path | None, output_dir: Path, group: GroupPlan) -> list[tuple[str, str, str]]:
    if log_dir is None:
        return []
    marker = group.workflow_name
    return [(crash.node, (crash.error or "see the crash file")[:400], crash.path.relative_to(output_dir).as_posix())
            for crash in read_crashes(log_dir) if f".{marker}." in f".{crash.node}."]


def _runtimes(work_dir: Path | None, group: GroupPlan) -> list[tuple[str, str]]:
    if work_dir is None:
        return []
    from nipype.utils.filemanip import loadpkl

    # the group's workflow inside the dataset's (named by its caller: synthsr_bids_wf by default)
    root = next(iter(sorted(work_dir.glob(f"*/{group.workflow_name}"))), work_dir / group.workflow_name)
    rows = []
    for result in sorted(root.glob("**/result_*.pklz")):
        try:
            duration = loadpkl(result).runtime.duration
        except Exception:  # noqa: BLE001, S112 - an unreadable result only loses its line
            continue
        rows.append((result.parent.relative_to(root).as_posix().replace("/", "."), f"{duration:.1f} s"))
    return rows


def _group_section(output_dir: Path, figures_dir: Path, group: GroupPlan, log_dir: Path | None,
                   work_dir: Path | None) -> GroupSection:
    from . import reportlets

    scans = []
    for job in group.jobs:
        try:
            scans.append(_scan_section(output_dir, figures_dir, group, job))
        except Exception as exc:  # noqa: BLE001 - one undrawable scan must not cost the subject its report
            title = ", ".join(Path(s).name for s in job.sources)
            scans.append(ScanSection(title=title, sources=list(job.sources), facts=[], notes=[],
                                     absent=[f"cannot draw this scan: {type(exc).__name__}: {exc}"]))
    fused_figures, absent = [], []
    fused = output_dir / group.fused_relpath if group.fused_relpath else None
    volumes, dseg = _volumes(output_dir, group)
    if fused is not None and fused.is_file():
        name = _stem(group.fused_relpath).replace("_desc-synthsr", "_desc-fused") + ".svg"
        reportlets.plot_views(fused, figures_dir / name, "fused image (1 mm)")
        fused_figures.append(Figure((figures_dir / name).relative_to(output_dir).as_posix(),
                                    f"Fused image: {Path(group.fused_relpath).name}."))
        name = _stem(group.fused_relpath).replace("_desc-synthsr", "_desc-reliabilityFused") + ".svg"
        fused_qc = _reliability(output_dir, figures_dir, fused, group.fused_entities, name)
        if fused_qc.figure:
            # the fused image has no facts table: its QC numbers and flags go in the caption
            numbers = "; ".join(f"{k} {v}" for k, v in fused_qc.facts + [(f, "") for f in fused_qc.flags])
            fused_figures.append(Figure(fused_qc.figure.src, f"{fused_qc.figure.caption} {numbers}."))
        absent += fused_qc.absent
        if dseg is not None:
            name = _stem(group.fused_relpath).replace("_desc-synthsr", "_desc-segmentation") + ".svg"
            legend = reportlets.segmentation_legend(dseg)
            reportlets.plot_segmentation(fused, dseg, figures_dir / name, legend)
            fused_figures.append(Figure((figures_dir / name).relative_to(output_dir).as_posix(),
                                        f"Segmentation contours: {dseg.name}.",
                                        legend=[(label, colour) for _, label, colour in legend]))
        tbm = _tbm_figure(output_dir, figures_dir, group)
        if tbm is not None:
            fused_figures.append(tbm)
    elif group.jobs:
        absent.append(f"no fused image ({group.fused_relpath}): see Errors")
    title = f"Session {group.session}" if group.session else "Anatomical scans"
    return GroupSection(label=group.label, title=title, scans=scans, fused=fused_figures, absent=absent,
                        volumes=volumes, thickness=_thickness(output_dir, group), skipped=list(group.skipped),
                        errors=_errors(log_dir, output_dir, group), runtimes=_runtimes(work_dir, group),
                        segmentation_qc=segmentation_qc(dseg) if dseg is not None else None)


# ----------------------------------------------------------------------------- the page
def write_subject_report(output_dir: str | os.PathLike[str], subject: str, groups: Sequence[GroupPlan], *,
                         work_dir: str | os.PathLike[str] | None = None,
                         log_dir: str | os.PathLike[str] | None = None) -> Path:
    """Draw the reportlets of ``subject``'s groups and write ``output_dir/sub-<subject>.html``."""
    import jinja2

    from .. import __version__

    output_dir = Path(output_dir).resolve()
    log_dir = Path(log_dir).resolve() if log_dir else latest_run_dir(output_dir)
    work = Path(work_dir).resolve() if work_dir and Path(work_dir).is_dir() else None
    figures_dir = output_dir / group_label(subject) / "figures"  # made by the first figure drawn
    sections = [_group_section(output_dir, figures_dir, g, log_dir, work) for g in groups]
    run = {}
    if log_dir is not None and (log_dir / RUN_RECORD).is_file():
        run = json.loads((log_dir / RUN_RECORD).read_text())
    citation = output_dir / "logs" / "CITATION.md"
    environment = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined,
                                     loader=jinja2.FileSystemLoader(TEMPLATE.parent))
    page = environment.get_template(TEMPLATE.name).render(
        subject=subject, sections=sections, version=__version__, run=run,
        sessions=[f"ses-{g.session}" for g in groups if g.session],
        model_notes=list(dict.fromkeys(s.model_notes for g in sections for s in g.scans if s.model_notes)),
        run_folder=log_dir.relative_to(output_dir).as_posix() if log_dir else None,
        work_dir=str(work) if work else None,
        methods=methods_html(citation.read_text()) if citation.is_file() else None,
        generated=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        python=sys.version.split()[0],
    )
    return atomic_write_bytes(output_dir / f"{group_label(subject)}.html", page.encode())


def write_subject_reports(output_dir: str | os.PathLike[str], plan: Plan, *,
                          work_dir: str | os.PathLike[str] | None = None,
                          log_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """One report per subject of ``plan`` (its groups in session order)."""
    subjects: dict[str, list[GroupPlan]] = {}
    for group in plan.groups:
        subjects.setdefault(group.subject, []).append(group)
    return [write_subject_report(output_dir, subject, sorted(groups, key=lambda g: g.session or ""),
                                 work_dir=work_dir, log_dir=log_dir)
            for subject, groups in sorted(subjects.items())]
