"""The derivatives sinks of the BIDS-App, one small ``init_ds_*_wf`` factory per group of outputs
(as smriprep's ``workflows/outputs.py``); every file goes through the one
:class:`~synthsr_nipype.interfaces.derivatives.DerivativesSink`, named by pybids' patterns."""

from __future__ import annotations

import os
from pathlib import Path

from nipype.interfaces.utility import IdentityInterface, Merge
from nipype.pipeline import engine as pe

from ..bids.derivatives import (
    RAW_DATASET_NAME,
    bids_uri,
    build_derivative_relpath,
    native_entities,
    reliability_entities,
)
from ..bids.labels import safe_name
from ..bids.plan import GroupPlan
from ..interfaces.derivatives import DerivativesSink
from .connections import pick


def init_ds_anat_wf(*, output_dir: str | os.PathLike, group: GroupPlan, native: bool = False,
                    name: str = "ds_anat_wf"):
    """The SynthSR derivatives of one group: each scan's image, the fused image, the transform of
    each scan registered onto the reference's synthetic image (none for the reference itself or a
    single-scan group: :attr:`~synthsr_nipype.bids.plan.GroupPlan.registered_jobs`), the reliability
    maps of each scan's image and of the fused image (``..._desc-<desc>Reliability_mask``, docs/qc.md)
    and, with ``native``, each scan's image on its input's grid (``..._res-native_...``), all with
    sidecars.

    Workflow Graph
        .. workflow::
            :graph2use: orig
            :simple_form: yes

            from synthsr_nipype.bids.grouping import Group
            from synthsr_nipype.bids.plan import plan_group
            from synthsr_nipype.bids.scan import ScanInfo
            from synthsr_nipype.workflows.outputs import init_ds_anat_wf

            scan = ScanInfo("/data/sub-01/anat/sub-01_T2w.nii.gz", "sub-01/anat/sub-01_T2w.nii.gz", {"subject": "01"},
                            "T2w", fov_mm=[180, 220, 200], usable=True)
            wf = init_ds_anat_wf(output_dir="/out", group=plan_group(Group("01", None, [scan])))

    Inputs
    ------
    scan_file_<i>, scan_json_<i>
        The SynthSR image of the group's job ``i`` and its provenance JSON.
    fused_file, fused_json
        The fused image and its JSON files (the reference scan's SynthSR JSON, the fusion's).
    xfm_<i>, fusion_json
        Job ``i``'s rigid transform onto the reference's synthetic image (connected for the
        registered jobs only) and the fusion's JSON.
    rel_file_<i>, rel_json_<i>, fused_rel_file, fused_rel_json
        The reliability maps and their sidecars.
    native_<i>
        With ``native``: job ``i``'s output on its input's grid.

    Outputs
    -------
    out_files
        The per-scan derivatives.
    fused_file
        The fused derivative.
    """
    n_jobs = len(group.jobs)
    kinds = ("scan_file", "scan_json", "xfm", "rel_file", "rel_json", *(("native",) if native else ()))
    fields = [f"{kind}_{i}" for i in range(n_jobs) for kind in kinds]
    workflow = pe.Workflow(name=name)
    inputnode = pe.Node(
        IdentityInterface(fields=[*fields, "fused_file", "fused_json", "fusion_json", "fused_rel_file",
                                  "fused_rel_json"]),
        name="inputnode",
    )
    outputnode = pe.Node(IdentityInterface(fields=["out_files", "fused_file"]), name="outputnode")
    merge = pe.Node(Merge(n_jobs), name="merge_ds", run_without_submitting=True)
    for index, job in enumerate(group.jobs):
        ds_scan = pe.Node(
            DerivativesSink(
                base_directory=str(output_dir),
                entities=dict(job.entities),
                sources=[bids_uri(s, RAW_DATASET_NAME) for s in job.sources],
            ),
            name=f"ds_{safe_name(job.name)}",
            run_without_submitting=True,
        )
        # fmt: off
        workflow.connect([
            (inputnode, ds_scan, [(f"scan_file_{index}", "in_file"),
                                  (f"scan_json_{index}", "in_json")]),
            (ds_scan, merge, [("out_file", f"in{index + 1}")]),
        ])
        # fmt: on
        ds_rel = pe.Node(
            DerivativesSink(base_directory=str(output_dir), entities=reliability_entities(job.entities),
                            sources=[bids_uri(job.out_relpath)]),
            name=f"ds_reliability_{safe_name(job.name)}",
            run_without_submitting=True,
        )
        workflow.connect([(inputnode, ds_rel, [(f"rel_file_{index}", "in_file"), (f"rel_json_{index}", "in_json")])])
        if native:
            ds_native = pe.Node(
                DerivativesSink(base_directory=str(output_dir), entities=native_entities(job.entities),
                                sources=[bids_uri(job.out_relpath), *(bids_uri(s, RAW_DATASET_NAME)
                                                                       for s in job.sources[:1])]),
                name=f"ds_native_{safe_name(job.name)}",
                run_without_submitting=True,
            )
            # the scan's SynthSR sidecar: the same provenance, the grid is the input's
            workflow.connect([(inputnode, ds_native, [(f"native_{index}", "in_file"),
                                                      (f"scan_json_{index}", "in_json")])])
    reference = group.jobs[group.reference_job or 0]
    for index in group.registered_jobs:
        job = group.jobs[index]
        ds_xfm = pe.Node(
            DerivativesSink(
                base_directory=str(output_dir),
                entities=group.xfm_entities(index),
                extension=".txt",
                # the two images the registration saw: the moving scan's output, the fixed reference's
                sources=[bids_uri(job.out_relpath), bids_uri(reference.out_relpath)],
            ),
            name=f"ds_xfm_{safe_name(job.name)}",
            run_without_submitting=True,
        )
        workflow.connect([(inputnode, ds_xfm, [(f"xfm_{index}", "in_file"), ("fusion_json", "in_json")])])
    ds_fused = pe.Node(
        DerivativesSink(
            base_directory=str(output_dir),
            entities=dict(group.fused_entities),
            sources=[bids_uri(job.out_relpath) for job in group.jobs],
            # the reference's SynthSR sidecar is merged in: the channels are those of every scan
            metadata={"InputChannels": [Path(p).name for job in group.jobs for p in job.inputs]},
        ),
        name="ds_fused",
        run_without_submitting=True,
    )
    ds_fused_rel = pe.Node(
        DerivativesSink(base_directory=str(output_dir), entities=reliability_entities(group.fused_entities),
                        sources=[bids_uri(group.fused_relpath),
                                 *(bids_uri(build_derivative_relpath(reliability_entities(job.entities)))
                                   for job in group.jobs)]),
        name="ds_fused_reliability",
        run_without_submitting=True,
    )
    # fmt: off
    workflow.connect([
        (inputnode, ds_fused_rel, [("fused_rel_file", "in_file"), ("fused_rel_json", "in_json")]),
        (inputnode, ds_fused, [("fused_file", "in_file"), ("fused_json", "in_json")]),
        (merge, outputnode, [("out", "out_files")]),
        (ds_fused, outputnode, [("out_file", "fused_file")]),
    ])
    # fmt: on
    return workflow


def init_ds_morphometry_wf(
    *,
    output_dir: str | os.PathLike,
    backend: str,
    fields: list[str],
    name: str = "ds_morphometry_wf",
):
    """The morphometry derivatives of one group (``fields``: the outputs the morphometry
    workflow makes), each with a sidecar of the backend's provenance (the look-up table is
    described by the dseg sidecar).

    Workflow Graph
        .. workflow::
            :graph2use: orig
            :simple_form: yes

            from synthsr_nipype.workflows.outputs import init_ds_morphometry_wf
            wf = init_ds_morphometry_wf(output_dir="/out", backend="ants",
                                        fields=["dseg", "dseg_tsv", "probsegs", "morph_tsv"])

    Inputs
    ------
    source_entities
        ``{"subject": ..., "session": ...}`` of the group.
    sources
        BIDS URIs of the inputs (the fused image).
    metadata
        The backend's provenance and the SynthSR model, in every sidecar.
    <field>
        Each output of ``fields``; ``probsegs`` is the CSF, GM, WM list.

    Outputs
    -------
    out_files
        The written derivatives.
    """
    from ..morphometry.derivatives import TISSUES, output_entities, sidecar_metadata

    outputs = output_entities(backend)
    sinks = [(field, None) for field in fields if field != "probsegs"]
    if "probsegs" in fields:
        sinks += [(f"probseg_{tissue}", index) for index, tissue in enumerate(TISSUES)]
    workflow = pe.Workflow(name=name)
    inputnode = pe.Node(
        IdentityInterface(fields=["source_entities", "sources", "metadata", *fields]),
        name="inputnode",
    )
    outputnode = pe.Node(IdentityInterface(fields=["out_files"]), name="outputnode")
    merge = pe.Node(Merge(len(sinks)), name="merge_ds", run_without_submitting=True)
    for number, (field, index) in enumerate(sinks, start=1):
        entities, extension = outputs[field]
        extra = sidecar_metadata(field, backend)
        sink = pe.Node(
            DerivativesSink(
                base_directory=str(output_dir),
                entities=entities,
                extension=extension,
                sidecar=extra is not None,
                metadata=extra or {},
                provenance=False,  # the backend's, in ``metadata``
            ),
            name=f"ds_{field}",
            run_without_submitting=True,
        )
        source = ("probsegs", pick, index) if index is not None else field
        # fmt: off
        workflow.connect([
            (inputnode, sink, [(source, "in_file"), ("source_entities", "source_entities"),
                               ("sources", "sources"), ("metadata", "in_metadata")]),
            (sink, merge, [("out_file", f"in{number}")]),
        ])
        # fmt: on
    workflow.connect(merge, "out", outputnode, "out_files")
    return workflow
