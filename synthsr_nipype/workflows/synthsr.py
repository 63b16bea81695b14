"""One SynthSR inference as a reusable workflow."""

from __future__ import annotations

from collections.abc import Sequence

from nipype.interfaces.utility import IdentityInterface
from nipype.pipeline import engine as pe

from ..interfaces.synthsr import SynthSR
from ..settings import SynthSROptions


def init_synthsr_wf(
    options: SynthSROptions = SynthSROptions(),
    *,
    model: str | None = None,
    model_sha256: str = "",
    omp_nthreads: int = 1,
    mem_gb: float = 2.0,
    slice_thickness: Sequence[float] = (),
    slice_direction: Sequence[str] = (),
    name: str = "synthsr_wf",
) -> pe.Workflow:
    """Predict a 1 mm MP-RAGE-like image from one scan (or one set of model channels).

    Workflow Graph
        .. workflow::
            :graph2use: orig
            :simple_form: yes

            from synthsr_nipype.workflows.synthsr import init_synthsr_wf
            wf = init_synthsr_wf()

        ``inputnode`` → ``synthsr`` (:class:`~synthsr_nipype.interfaces.SynthSR`) → ``outputnode``

    Parameters
    ----------
    options : :class:`~synthsr_nipype.settings.SynthSROptions`
        How the scan goes through SynthSR: ``ct``, ``flip``, ``sharpen``, ``output_space`` (``native``: also
        the output on the input scan's grid, ``out_native``), and where it runs (``device``, ``use_gpu``: they
        do not change results and are not hashed).
    model
        Registry name (``v2``, ``lowfield``, ``v1``, ``hyperfine``) or path to a Keras .h5; default
        ``options.model`` (a group passes the general model for the scans a multi-channel one cannot take).
    model_sha256
        SHA-256 of the weights (part of the cache key).
    omp_nthreads
        Threads of the node (not hashed).
    mem_gb
        Memory estimate for the scheduler (see :func:`synthsr_nipype.bids.estimate_mem_gb`).
    slice_thickness, slice_direction
        Per input: BIDS ``SliceThickness`` (mm, 0 unknown) and ``SliceEncodingDirection`` (``""``
        unknown), for the reliability map's slice gaps (docs/qc.md).
    name
        Workflow name.

    Inputs
    ------
    in_files
        Channel images (one for general models; T1w, T2w for Hyperfine).

    Outputs
    -------
    out_file
        The synthetic 1 mm T1w image.
    out_json
        Its provenance (model, SHA-256, flags, version, QC numbers).
    out_reliability, out_reliability_json
        Its reliability map and the map's sidecar (docs/qc.md).
    out_native
        With ``options.output_space="native"``: the output on the input's grid.
    """
    from ..model.registry import model_argument, model_label, model_notes

    model = model_argument(model or options.model)  # a relative path names nothing in the node's own folder
    workflow = pe.Workflow(name=name)
    flags = [text for on, text in ((options.ct, "CT mode"), (options.flip, "left-right flip averaging"),
                                   (options.sharpen, "sharpening")) if on]
    notes = model_notes(model)
    if notes is not None:  # a model of our own: its own text, never the published models' validation
        workflow.__desc__ = notes.methods + (f" Options: {', '.join(flags)}." if flags else "")
    else:
        workflow.__desc__ = (
            "Each anatomical scan was converted into a synthetic 1 mm isotropic MP-RAGE-like "
            "T1-weighted image with SynthSR [@synthsr1; @synthsr2"
            # the low-field and Hyperfine models come from the Radiology paper
            f"{'; @hyperfine' if model_label(model) in ('lowfield', 'hyperfine') else ''}] "
            f"(model `{model_label(model)}`{''.join(', ' + flag for flag in flags)}), "
            "as implemented in PyTorch by synthsr-nipype."
        )
    inputnode = pe.Node(IdentityInterface(fields=["in_files"]), name="inputnode")
    outputnode = pe.Node(IdentityInterface(
        fields=["out_file", "out_json", "out_reliability", "out_reliability_json", "out_native"]), name="outputnode")
    synthsr = pe.Node(
        SynthSR(
            model=model,
            ct=options.ct,
            flip=options.flip,
            sharpen=options.sharpen,
            device=options.device,
            use_gpu=options.use_gpu,
            num_threads=omp_nthreads,
            output_space=options.output_space,
        ),
        name="synthsr",
        n_procs=omp_nthreads,
        mem_gb=mem_gb,
    )
    if model_sha256:
        synthsr.inputs.model_sha256 = model_sha256
    if any(slice_thickness):  # set only when known: the node's cache key is unchanged otherwise
        synthsr.inputs.slice_thickness = [float(t) for t in slice_thickness]
        synthsr.inputs.slice_direction = list(slice_direction) or [""] * len(slice_thickness)
    if options.output_space == "native":
        workflow.connect(synthsr, "out_native", outputnode, "out_native")
    # fmt: off
    workflow.connect([
        (inputnode, synthsr, [("in_files", "in_files")]),
        (synthsr, outputnode, [("out_file", "out_file"), ("out_json", "out_json"),
                               ("out_reliability", "out_reliability"),
                               ("out_reliability_json", "out_reliability_json")]),
    ])
    # fmt: on
    return workflow
