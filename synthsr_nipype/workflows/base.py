"""Top-level workflows: all groups of a dataset, and one group (subject/session)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from nipype.interfaces.utility import IdentityInterface, Merge
from nipype.pipeline import engine as pe

from ..bids.derivatives import bids_uri
from ..bids.labels import safe_name
from ..bids.plan import GroupPlan, Plan
from ..citations import CITATIONS
from ..inference.fusion import REGISTRATION_TARGET
from ..interfaces.fusion import RigidFusion
from ..settings import MorphometryOptions, SynthSROptions
from .connections import pick
from .outputs import init_ds_anat_wf
from .synthsr import init_synthsr_wf


def init_single_subject_wf(
    *,
    group: GroupPlan,
    output_dir: str,
    model_sha256: Mapping[str, str] | None = None,
    synthsr: SynthSROptions = SynthSROptions(),
    morphometry: MorphometryOptions = MorphometryOptions(),
    omp_nthreads: int = 1,
    name: str | None = None,
):
    """SynthSR on every scan of one group, fusion of the outputs, the derivatives sinks and,
    with a morphometry backend, the morphometry of the fused image.

    Workflow Graph
        .. workflow::
            :graph2use: orig
            :simple_form: yes

            from synthsr_nipype.bids.grouping import Group
            from synthsr_nipype.bids.plan import plan_group
            from synthsr_nipype.bids.scan import ScanInfo
            from synthsr_nipype.workflows.base import init_single_subject_wf

            # a group as synthsr_nipype.bids.build_plan() makes it: sub-01, an axial and a coronal T1w
            names = [f"sub-01/anat/sub-01_acq-{acq}_T1w.nii.gz" for acq in ("ax", "cor")]
            scans = [ScanInfo("/data/" + name, name, {"subject": "01", "acquisition": acq}, "T1w",
                              fov_mm=[180, 220, 200], usable=True) for name, acq in zip(names, ("ax", "cor"))]
            wf = init_single_subject_wf(group=plan_group(Group("01", None, scans)), output_dir="/out")

        ``synthsr_<scan>_wf`` (one per job) → ``merge`` → ``fusion``
        (:class:`~synthsr_nipype.interfaces.RigidFusion`); the SynthSR outputs, the fused image
        (``sub-X[_ses-Y]_desc-synthsr_T1w``) and the rigid transform of each other scan onto
        the reference scan's synthetic image, whose grid the fused image shares
        (``…_from-synthsr<Suffix>_to-synthsr<ReferenceSuffix>_mode-image_xfm.txt``, ITK text;
        none for the reference or a single-scan group) → ``ds_anat_wf``
        (:func:`~synthsr_nipype.workflows.outputs.init_ds_anat_wf`) → ``outputnode``;
        with a morphometry backend: the fused derivative → ``morphometry_wf``
        (:func:`~synthsr_nipype.workflows.morphometry.init_morphometry_wf`, which writes its
        own derivatives into ``output_dir``)

    Parameters
    ----------
    group
        The group's plan (scans, models, output entities, reference).
    output_dir
        Root of the derivatives dataset.
    model_sha256
        SHA-256 of each model named in the plan (cache keys and sidecars).
    synthsr
        :class:`~synthsr_nipype.settings.SynthSROptions`: what
        :func:`~synthsr_nipype.workflows.synthsr.init_synthsr_wf` takes, and the fusion method.
    morphometry
        :class:`~synthsr_nipype.settings.MorphometryOptions`: no backend (SynthSR only), or
        what :func:`~synthsr_nipype.workflows.morphometry.init_morphometry_wf` builds.
    omp_nthreads
        ``RunOptions.omp_nthreads``: the threads of a SynthSR node (fewer where the cost model
        advises it) and of the morphometry's multi-threaded nodes.
    name
        Workflow name (default ``single_subject_<sub>[_<ses>]_wf``).

    Outputs
    -------
    out_files
        Per-scan derivatives.
    fused_file
        The fused group-level derivative.
    morph_files
        The morphometry derivatives written (with ``seg_backend``; else undefined).
    """
    if not group.jobs:
        raise ValueError(f"{group.label}: no usable scan, nothing to build")
    model_sha256 = dict(model_sha256 or {})
    name = name or group.workflow_name
    workflow = pe.Workflow(name=name)
    outputnode = pe.Node(
        IdentityInterface(fields=["out_files", "fused_file", "morph_files"]), name="outputnode"
    )
    merge = pe.Node(Merge(len(group.jobs)), name="merge", run_without_submitting=True)
    merge_rel = pe.Node(Merge(len(group.jobs)), name="merge_reliability", run_without_submitting=True)
    ds_anat_wf = init_ds_anat_wf(output_dir=output_dir, group=group, native=synthsr.output_space == "native")
    for index, job in enumerate(group.jobs):
        job_wf = init_synthsr_wf(
            synthsr,
            model=job.model,
            model_sha256=model_sha256.get(job.model, ""),
            # the cost model's thread advice, within the user's cap: small jobs leave slots free
            omp_nthreads=max(1, min(omp_nthreads, job.n_procs)),
            mem_gb=job.mem_gb,
            slice_thickness=job.slice_thickness,
            slice_direction=job.slice_direction,
            name=f"synthsr_{safe_name(job.name)}_wf",
        )
        job_wf.inputs.inputnode.in_files = list(job.inputs)
        # fmt: off
        workflow.connect([
            (job_wf, ds_anat_wf, [("outputnode.out_file", f"inputnode.scan_file_{index}"),
                                  ("outputnode.out_json", f"inputnode.scan_json_{index}"),
                                  ("outputnode.out_reliability", f"inputnode.rel_file_{index}"),
                                  ("outputnode.out_reliability_json", f"inputnode.rel_json_{index}")]),
            (job_wf, merge, [("outputnode.out_file", f"in{index + 1}")]),
            (job_wf, merge_rel, [("outputnode.out_reliability", f"in{index + 1}")]),
        ])
        # fmt: on
        if synthsr.output_space == "native":
            workflow.connect(job_wf, "outputnode.out_native", ds_anat_wf, f"inputnode.native_{index}")
        if index == (group.reference_job or 0):
            ref_json = (job_wf, "outputnode.out_json")

    fusion = pe.Node(
        RigidFusion(reference_index=group.reference_job or 0, method=synthsr.fusion_method,
                    # the scans' grids and slice geometry, as each SynthSR node has them: the fused UncoveredFraction
                    scan_files=[list(job.inputs) for job in group.jobs],
                    slice_thickness=[[float(t) for t in job.slice_thickness] for job in group.jobs],
                    slice_direction=[list(job.slice_direction) for job in group.jobs]),
        name="fusion",
        mem_gb=max(1.0, 0.1 * len(group.jobs)),
    )
    # a node's description: collect_descriptions places it in data-flow order (after SynthSR's)
    fusion.__desc__ = (
        "Anatomical scans were grouped by subject and session with PyBIDS [@pybids]; in each "
        "group, the scan with the smallest voxel volume was the reference. The synthetic images "
        f"of a group were rigidly registered onto {REGISTRATION_TARGET} with ANTs [@ants] "
        "(antspyx; Mattes mutual information at 8, 4 and 2 mm; fixed random seed) and combined "
        f"with a voxel-wise {synthsr.fusion_method} into one subject-level volume on its grid; "
        "a group with a single scan passed it through unchanged."
    )
    merge_json = pe.Node(Merge(2), name="merge_json", run_without_submitting=True)
    for index in group.registered_jobs:
        workflow.connect(fusion, ("out_transforms", pick, index), ds_anat_wf, f"inputnode.xfm_{index}")
    # fmt: off
    workflow.connect([
        (merge, fusion, [("out", "in_files")]),
        (merge_rel, fusion, [("out", "reliability_files")]),
        (ref_json[0], merge_json, [(ref_json[1], "in1")]),
        (fusion, merge_json, [("out_json", "in2")]),
        (fusion, ds_anat_wf, [("out_file", "inputnode.fused_file"),
                              ("out_json", "inputnode.fusion_json"),
                              ("out_reliability", "inputnode.fused_rel_file"),
                              ("out_reliability_json", "inputnode.fused_rel_json")]),
        (merge_json, ds_anat_wf, [("out", "inputnode.fused_json")]),
        (ds_anat_wf, outputnode, [("outputnode.out_files", "out_files"),
                                  ("outputnode.fused_file", "fused_file")]),
    ])
    # fmt: on
    if morphometry.enabled:
        from .morphometry import init_morphometry_wf

        morph_wf = init_morphometry_wf(
            morphometry,
            omp_nthreads=omp_nthreads,
            device=synthsr.device,
            use_gpu=synthsr.use_gpu,
            output_dir=str(output_dir),
        )
        ents = {"subject": group.subject}
        if group.session:
            ents["session"] = group.session
        morph_wf.inputs.inputnode.source_entities = ents
        # the fused image, as a BIDS URI within this derivatives dataset
        morph_wf.inputs.inputnode.sources = [bids_uri(group.fused_relpath)]
        # fmt: off
        workflow.connect([
            (ds_anat_wf, morph_wf, [("outputnode.fused_file", "inputnode.t1w")]),
            (fusion, morph_wf, [("out_reliability", "inputnode.reliability")]),
            # the reference scan's SynthSR sidecar: its Model is recorded for the group level
            (ref_json[0], morph_wf, [(ref_json[1], "inputnode.synthsr_metadata")]),
            (morph_wf, outputnode, [("outputnode.out_files", "morph_files")]),
        ])
        # fmt: on
    return workflow


def init_synthsr_bids_wf(
    *,
    plan: Plan,
    output_dir: str | Path,
    work_dir: str | Path | None = None,
    model_sha256: Mapping[str, str] | None = None,
    synthsr: SynthSROptions = SynthSROptions(),
    morphometry: MorphometryOptions = MorphometryOptions(),
    omp_nthreads: int = 1,
    name: str = "synthsr_bids_wf",
):
    """The BIDS-App: one :func:`init_single_subject_wf` per group of the plan.

    Workflow Graph
        .. workflow::
            :graph2use: colored
            :simple_form: yes

            from synthsr_nipype.bids.grouping import Group
            from synthsr_nipype.bids.plan import Plan, plan_group
            from synthsr_nipype.bids.scan import ScanInfo
            from synthsr_nipype.workflows.base import init_synthsr_bids_wf

            # a plan as synthsr_nipype.bids.build_plan() makes it: sub-01 and sub-02, one FLAIR each
            groups = [plan_group(Group(sub, None, [ScanInfo(f"/data/sub-{sub}/anat/sub-{sub}_FLAIR.nii.gz",
                                                            f"sub-{sub}/anat/sub-{sub}_FLAIR.nii.gz", {"subject": sub},
                                                            "FLAIR", fov_mm=[180, 220, 200], usable=True)]))
                      for sub in ("01", "02")]
            wf = init_synthsr_bids_wf(plan=Plan("/data", "v2", "v2", groups), output_dir="/out")

        ``single_subject_<sub>[_<ses>]_wf`` for each group with at least one usable scan.

    Parameters
    ----------
    plan
        The plan (:func:`synthsr_nipype.bids.build_plan`).
    output_dir
        Root of the derivatives dataset.
    work_dir
        Nipype working directory (node caches).
    model_sha256, synthsr, morphometry, omp_nthreads
        See :func:`init_single_subject_wf`.
    name
        Workflow name.
    """
    from .. import __version__

    workflow = pe.Workflow(name=name)
    if work_dir is not None:
        workflow.base_dir = str(work_dir)
    # after the methods it names, so that the text opens with SynthSR
    workflow.__postdesc__ = (
        f"Results included in this manuscript come from synthsr-nipype {__version__}, "
        "which is based on Nipype [@nipype]."
    )
    for group in plan.runnable_groups:
        workflow.add_nodes(
            [
                init_single_subject_wf(
                    group=group,
                    output_dir=str(output_dir),
                    model_sha256=model_sha256,
                    synthsr=synthsr,
                    morphometry=morphometry,
                    omp_nthreads=omp_nthreads,
                )
            ]
        )
    return workflow


def collect_descriptions(workflow) -> list[str]:
    """``__desc__`` texts of a workflow, then of its nodes and sub-workflows in data-flow order
    (SynthSR before the fusion before the morphometry; ties by name), then its ``__postdesc__``,
    without repeats: identical groups give one paragraph."""
    import networkx as nx

    texts: list[str] = []

    def add(text: str | None) -> None:
        if text and text not in texts:
            texts.append(text)

    def visit(wf) -> None:
        add(getattr(wf, "__desc__", None))
        for node in nx.lexicographical_topological_sort(wf._graph, key=lambda n: n.name):
            if isinstance(node, pe.Workflow):
                visit(node)
            else:
                add(getattr(node, "__desc__", None))
        add(getattr(wf, "__postdesc__", None))

    visit(workflow)
    return texts


def citation_markdown(workflow) -> str:
    """The methods boilerplate (``logs/CITATION.md``) assembled from the descriptions."""
    texts = collect_descriptions(workflow)
    body = "\n\n".join(texts)
    used = [key for key in CITATIONS if f"@{key}" in body]
    refs = "\n".join(f"- [{key}] {CITATIONS[key]}" for key in used)
    return (
        "# Methods\n\nThis text was generated by synthsr-nipype from the workflow it ran; "
        "it may be copied into a manuscript unchanged.\n\n"
        f"{body}\n\n## References\n\n{refs}\n"
    )
