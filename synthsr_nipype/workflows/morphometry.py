"""Participant-level morphometry after SynthSR: segmentation, volumetry and TBM."""

from __future__ import annotations

import os

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from ..interfaces.segmentation import (
    TBM,
    AntsSegmentation,
    CorticalThickness,
    SynthSegThickness,
    TemplateRegistration,
)
from ..morphometry import BACKENDS, TEMPLATE_SPACE, THICKNESS_BACKENDS
from ..morphometry.ants_backend import DEFAULT_SEED
from ..settings import MorphometryOptions

#: the outputs written as derivatives (with ``output_dir``)
DERIVATIVE_FIELDS = ("dseg", "dseg_tsv", "probsegs", "brain_mask", "morph_tsv", "to_template_xfm",
                     "from_template_xfm", "logjacobian", "thickness", "thickness_tsv")
OUTPUT_FIELDS = [
    "dseg", "dseg_tsv", "probsegs", "brain_mask", "morph_tsv", "tiv", "logjacobian",
    "to_template_xfm", "from_template_xfm", "thickness", "thickness_tsv", "metadata", "out_files",
]


def _merge_metadata(backend_meta, synthsr_meta=None, registration_meta=None):
    """Sidecar content: the backend's provenance + the SynthSR model that made the T1w (+ the template
    registration's provenance, ``TemplateRegistration``, where TBM runs beside a backend other than ``ants``).

    ``synthsr_meta`` is the SynthSR node's metadata, as a dict or as the path of its JSON sidecar.
    """
    import json

    meta = dict(backend_meta or {})
    if registration_meta:
        meta["TemplateRegistration"] = {k: v for k, v in registration_meta.items() if k != "SegmentationBackend"}
    if isinstance(synthsr_meta, str):
        with open(synthsr_meta, encoding="utf-8") as f:
            synthsr_meta = json.load(f)
    model = synthsr_meta.get("Model") if isinstance(synthsr_meta, dict) else None
    if model:
        meta["SynthSRModel"] = model
    return meta


def _fs_subject_id(source_entities):
    from synthsr_nipype.bids.labels import group_label

    return group_label(source_entities["subject"], source_entities.get("session"))


def _segstats_args(subject_id):
    # --etiv needs the subject's talairach.xfm
    return f"--subject {subject_id}"


def _as_list(*items):
    return [i for i in items if i]


def _add_reliability(morph_tsv, dseg, reliability=None):
    """The volume table with each structure's mean reliability (unchanged without a map). A Function node's
    body: it runs in the node's process and imports what it needs there."""
    import os

    import nibabel as nb

    from synthsr_nipype.atomic import atomic_write_tsv, read_tsv
    from synthsr_nipype.morphometry.volumetry import structure_reliability

    if not reliability:
        return morph_tsv
    table = structure_reliability(read_tsv(morph_tsv), nb.load(dseg), nb.load(reliability))
    return str(atomic_write_tsv(os.path.join(os.getcwd(), os.path.basename(morph_tsv)), table))


def init_morphometry_wf(
    options: MorphometryOptions,
    *,
    omp_nthreads: int = 1,
    device: str = "cpu",
    use_gpu: bool = False,
    seed: int = DEFAULT_SEED,
    deterministic: bool = True,
    output_dir: str | os.PathLike | None = None,
    name: str = "morphometry_wf",
) -> pe.Workflow:
    """
    Segment the SynthSR volume, measure tissue/structure volumes and, optionally, run TBM.

    Workflow Graph
        .. workflow::
            :graph2use: orig
            :simple_form: yes

            from synthsr_nipype.workflows.morphometry import init_morphometry_wf
            from synthsr_nipype.settings import MorphometryOptions
            wf = init_morphometry_wf(MorphometryOptions(seg_backend="ants", tbm=True))

    Parameters
    ----------
    options : :class:`~synthsr_nipype.settings.MorphometryOptions`
        The backend (``ants``: embedded, MNI152NLin2009aSym priors + Atropos; ``synthseg``: the package's
        SynthSeg port, :mod:`synthsr_nipype.segmentation`, with its QC scores; ``synthseg-fs``: FreeSurfer's
        mri_synthseg; ``recon-all``: FreeSurfer, aseg volumes via mri_segstats; ``samseg``: run_samseg),
        TBM, thickness, the template grid, FreeSurfer's licence and ``SUBJECTS_DIR``, SynthSeg's
        options and weights: each field is documented there.
    omp_nthreads : :obj:`int`
        Threads of the multi-threaded nodes (FreeSurfer tools; ANTs only when not ``deterministic``).
    device : :obj:`str`
        Where the SynthSeg port runs (``--device``: cpu, cuda, cuda:N, mps or auto).
    use_gpu : :obj:`bool`
        The SynthSeg port's node takes a MultiProc GPU slot, as the SynthSR nodes do.
    seed : :obj:`int`
        ANTs random seed, recorded in the sidecars.
    deterministic : :obj:`bool`
        Run ANTs single-threaded so that reruns give identical numbers.
    output_dir : :obj:`os.PathLike`
        When given, the workflow writes its own BIDS derivatives (with sidecars) there.
    name : :obj:`str`
        Workflow name.

    Inputs
    ------
    t1w
        The (fused) SynthSR T1w volume.
    source_entities
        ``{"subject": ..., "session": ...}`` of the group (subject/session).
    sources
        BIDS URIs of the inputs, written as ``Sources`` in the sidecars.
    synthsr_metadata
        Optional: the SynthSR node's metadata, a dict or the path of its JSON sidecar (its
        ``Model`` is recorded in the sidecars and read back by the group level).

    Outputs
    -------
    dseg, dseg_tsv, probsegs, brain_mask, morph_tsv, tiv
        Segmentation, its look-up table, CSF/GM/WM posteriors (``ants``, ``synthseg``), mask (``ants``),
        volumes.
    logjacobian, to_template_xfm, from_template_xfm
        TBM map in template space and the ANTs transforms (``ants`` backend or ``tbm``).
    thickness, thickness_tsv
        Cortical thickness map (mm) and table (``thickness``; ``ants``: per hemisphere; ``synthseg``: per
        cortical parcel with ``synthseg_parc``, else per hemisphere).
    metadata
        Sidecar content (backend, version, seed, model).
    out_files
        Written derivatives (when ``output_dir`` is given).
    """
    backend = options.seg_backend
    if backend not in BACKENDS:
        raise ValueError(f"seg_backend must be one of {BACKENDS}, not {backend!r}")
    if options.thickness and backend not in THICKNESS_BACKENDS:
        raise ValueError(f"thickness needs the GM/WM posteriors of {' or '.join(THICKNESS_BACKENDS)}, "
                         f"not {backend!r}")
    workflow = pe.Workflow(name=name)
    ants_threads = 1 if deterministic else max(1, int(omp_nthreads))
    desc = {
        "ants": (
            "The SynthSR volume was registered to the MNI152NLin2009aSym template (affine + SyN, "
            f"ANTs via antspyx, seed {seed}), whose tissue priors and brain mask were warped back to "
            "segment cerebrospinal fluid, grey and white matter with Atropos inside the intracranial mask. "
        ),
        "synthseg": "The SynthSR volume was segmented with SynthSeg"
        f"{' (robust model)' if options.synthseg_robust else ''}"
        f"{' and its cortical parcellation' if options.synthseg_parc else ''} "
        "(the PyTorch port of synthsr_nipype.segmentation), with its automated QC scores. ",
        "synthseg-fs": "The SynthSR volume was segmented with FreeSurfer's mri_synthseg"
        f"{' (robust model)' if options.synthseg_robust else ''}. ",
        "recon-all": "The SynthSR volume was processed with FreeSurfer's recon-all; aseg volumes were "
        "extracted with mri_segstats. ",
        "samseg": "The SynthSR volume was segmented with FreeSurfer's SAMSEG. ",
    }[backend]
    if options.tbm:
        desc += (
            "For tensor-based morphometry, the log-determinant of the Jacobian of the SyN warp "
            f"(affine part removed) was computed in {TEMPLATE_SPACE} space. "
        )
    if options.thickness:
        regions = "per cortical parcel" if backend == "synthseg" and options.synthseg_parc else "per hemisphere"
        desc += (
            "Cortical thickness was estimated with DiReCT (ANTs kelly_kapowski) from the grey- and "
            f"white-matter posteriors{' of SynthSeg' if backend == 'synthseg' else ''} and averaged "
            f"{regions}. "
        )
    workflow.__desc__ = desc

    inputnode = pe.Node(
        niu.IdentityInterface(fields=["t1w", "source_entities", "sources", "synthsr_metadata", "reliability"]),
        name="inputnode"
    )
    outputnode = pe.Node(niu.IdentityInterface(fields=OUTPUT_FIELDS), name="outputnode")
    merge_meta = pe.Node(
        niu.Function(function=_merge_metadata, input_names=["backend_meta", "synthsr_meta", "registration_meta"],
                     output_names=["meta"]),
        name="merge_meta", run_without_submitting=True,
    )
    workflow.connect([(inputnode, merge_meta, [("synthsr_metadata", "synthsr_meta")])])
    # (node, its output, outputnode field): connected to the outputnode and, when writing
    # derivatives, straight to the sink (outputnode → sink → outputnode would be a cycle)
    outputs: list[tuple[pe.Node, str, str]] = [(merge_meta, "meta", "metadata")]

    reg = None
    if backend == "ants" or options.tbm:
        # ~1 GB for a 1 mm head and template; the single-threaded default is what makes reruns identical
        reg = pe.Node(
            TemplateRegistration(template_resolution=options.template_resolution, seed=seed, num_threads=ants_threads),
            name="template_reg", n_procs=ants_threads, mem_gb=2.0,
        )
        workflow.connect([(inputnode, reg, [("t1w", "t1w")])])
        if backend != "ants":  # the ants backend's own provenance already is the registration's
            workflow.connect(reg, "metadata", merge_meta, "registration_meta")
        outputs += [(reg, "to_template", "to_template_xfm"), (reg, "from_template", "from_template_xfm")]

    if backend == "ants":
        seg = pe.Node(
            AntsSegmentation(template_resolution=options.template_resolution, seed=seed, num_threads=ants_threads),
            name="ants_seg", n_procs=ants_threads, mem_gb=2.0,
        )
        workflow.connect([
            (inputnode, seg, [("t1w", "t1w")]),
            (reg, seg, [("from_template", "from_template"), ("skull_stripped", "skull_stripped")]),
            (seg, merge_meta, [("metadata", "backend_meta")]),
        ])
        outputs += [(seg, f, f) for f in ("dseg", "dseg_tsv", "probsegs", "brain_mask", "morph_tsv", "tiv")]
    else:
        from ..interfaces.freesurfer import FreeSurferVolumetry

        fsvol = pe.Node(FreeSurferVolumetry(backend=backend), name="fs_volumetry")
        workflow.connect([
            (inputnode, fsvol, [("t1w", "reference")]),
            (fsvol, merge_meta, [("metadata", "backend_meta")]),
        ])
        outputs += [(fsvol, f, f) for f in ("dseg", "dseg_tsv", "morph_tsv")]
        if backend == "synthseg":
            from ..interfaces.synthseg import SynthSeg

            # ~3 GB for a 1 mm head on CPU (the port's peak; docs/segmentation.md)
            # the tissue posteriors as _probseg (and DiReCT's pair with thickness), summed inside the node:
            # the 4-D posteriors (~1.4 GB for a 1 mm head) are never written
            synthseg = pe.Node(SynthSeg(robust=options.synthseg_robust, parc=options.synthseg_parc, qc=True,
                                        tissue_probsegs=True, thickness_posteriors=options.thickness,
                                        device=device, use_gpu=use_gpu, num_threads=max(1, int(omp_nthreads))),
                               name="synthseg", n_procs=omp_nthreads, mem_gb=4.0)
            if options.seg_models_dir:
                synthseg.inputs.models_dir = str(options.seg_models_dir)
            workflow.connect([
                (inputnode, synthseg, [("t1w", "in_file")]),
                (synthseg, fsvol, [("out_seg", "seg_file"), ("out_volumes", "volumes"),
                                   ("version", "software_version"), ("qc_scores", "qc_scores")]),
            ])
            outputs.append((synthseg, "probsegs", "probsegs"))
        elif backend == "synthseg-fs":
            from ..interfaces.freesurfer import MRISynthSeg

            synthseg = pe.Node(MRISynthSeg(robust=options.synthseg_robust, parc=options.synthseg_parc,
                                           threads=omp_nthreads, cpu=True),
                               name="synthseg", n_procs=omp_nthreads, mem_gb=8.0)
            workflow.connect([
                (inputnode, synthseg, [("t1w", "in_file")]),
                (synthseg, fsvol, [("out_file", "seg_file"), ("vol_file", "volumes")]),
            ])
        elif backend == "samseg":
            from ..interfaces.freesurfer import SAMSeg

            samseg = pe.Node(SAMSeg(threads=omp_nthreads), name="samseg", n_procs=omp_nthreads, mem_gb=8.0)
            to_list = pe.Node(niu.Function(function=_as_list, input_names=["a", "b"], output_names=["out"]),
                              name="samseg_volumes", run_without_submitting=True)
            workflow.connect([
                (inputnode, samseg, [("t1w", "in_files")]),
                (samseg, fsvol, [("seg_file", "seg_file")]),
                (samseg, to_list, [("stats_file", "a"), ("tiv_file", "b")]),
                (to_list, fsvol, [("out", "volumes")]),
            ])
        else:  # recon-all
            from nipype.interfaces.freesurfer import ReconAll, SegStats

            from ..morphometry.freesurfer import find_license

            lic = find_license(options.fs_license_file)
            recon = pe.Node(ReconAll(directive="all", openmp=omp_nthreads), name="recon_all",
                            n_procs=omp_nthreads, mem_gb=8.0)
            if options.fs_subjects_dir:
                recon.inputs.subjects_dir = str(options.fs_subjects_dir)
            if lic is not None:
                recon.inputs.environ = {"FS_LICENSE": str(lic)}
            subj = pe.Node(niu.Function(function=_fs_subject_id, input_names=["source_entities"],
                                        output_names=["subject_id"]), name="fs_subject_id",
                           run_without_submitting=True)
            segargs = pe.Node(niu.Function(function=_segstats_args, input_names=["subject_id"],
                                           output_names=["args"]), name="segstats_args",
                              run_without_submitting=True)
            segstats = pe.Node(SegStats(default_color_table=True, exclude_id=0, etiv=True,
                                        summary_file="aseg_segstats.stats"), name="segstats")
            workflow.connect([
                (inputnode, subj, [("source_entities", "source_entities")]),
                (inputnode, recon, [("t1w", "T1_files")]),
                (subj, recon, [("subject_id", "subject_id")]),
                (recon, segstats, [("aseg", "segmentation_file"), ("subjects_dir", "subjects_dir")]),
                (recon, segargs, [("subject_id", "subject_id")]),
                (segargs, segstats, [("args", "args")]),
                (recon, fsvol, [("aseg", "seg_file")]),
                (segstats, fsvol, [("summary_file", "volumes")]),
            ])

    if options.tbm:
        tbm_node = pe.Node(TBM(template_resolution=options.template_resolution, num_threads=ants_threads),
                           name="tbm", n_procs=ants_threads, mem_gb=2.0)
        workflow.connect([
            (inputnode, tbm_node, [("t1w", "t1w")]),
            (reg, tbm_node, [("to_template", "to_template")]),
        ])
        outputs.append((tbm_node, "logjacobian", "logjacobian"))

    if options.thickness and backend == "synthseg":
        ct = pe.Node(SynthSegThickness(num_threads=ants_threads), name="cortical_thickness", n_procs=ants_threads,
                     mem_gb=2.0)
        if options.thickness_iterations:
            ct.inputs.iterations = int(options.thickness_iterations)
        workflow.connect([
            (fsvol, ct, [("dseg", "dseg")]),
            (synthseg, ct, [("thickness_gm", "gm"), ("thickness_wm", "wm")]),
        ])
        outputs += [(ct, "thickness", "thickness"), (ct, "thickness_tsv", "thickness_tsv")]
    elif options.thickness:
        ct = pe.Node(CorticalThickness(template_resolution=options.template_resolution, num_threads=ants_threads),
                     name="cortical_thickness", n_procs=ants_threads, mem_gb=2.0)
        if options.thickness_iterations:
            ct.inputs.iterations = int(options.thickness_iterations)
        workflow.connect([
            (seg, ct, [("dseg", "dseg"), ("probsegs", "probsegs")]),
            (reg, ct, [("from_template", "from_template")]),
        ])
        outputs += [(ct, "thickness", "thickness"), (ct, "thickness_tsv", "thickness_tsv")]
    sources = {dst: (node, src) for node, src, dst in outputs}
    if "morph_tsv" in sources and "dseg" in sources:
        # each structure's mean reliability (docs/qc.md), from the fused image's map
        add_rel = pe.Node(niu.Function(function=_add_reliability, input_names=["morph_tsv", "dseg", "reliability"],
                                       output_names=["morph_tsv"]), name="morph_reliability")
        workflow.connect([(inputnode, add_rel, [("reliability", "reliability")])])
        for field in ("morph_tsv", "dseg"):
            workflow.connect(*sources[field], add_rel, field)
        outputs = [(add_rel, "morph_tsv", dst) if dst == "morph_tsv" else (node, src, dst)
                   for node, src, dst in outputs]

    for node, src, dst in outputs:
        workflow.connect(node, src, outputnode, dst)

    if output_dir is not None:
        from .outputs import init_ds_morphometry_wf

        written = [dst for _, _, dst in outputs if dst in DERIVATIVE_FIELDS]
        ds_wf = init_ds_morphometry_wf(output_dir=output_dir, backend=backend, fields=written)
        workflow.connect([
            (inputnode, ds_wf, [("source_entities", "inputnode.source_entities"),
                                ("sources", "inputnode.sources")]),
            (ds_wf, outputnode, [("outputnode.out_files", "out_files")]),
        ])
        for node, src, dst in outputs:
            if dst in written or dst == "metadata":
                workflow.connect(node, src, ds_wf, f"inputnode.{dst}")
    return workflow
