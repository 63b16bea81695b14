"""One SynthSR inference as a reusable workflow."""

from __future__ import annotations

from collections.abc import Sequence

from nipype.interfaces.utility import IdentityInterface
from nipype.pipeline import engine as pe

from ..interfaces.synthsr import SynthSR


def init_synthsr_wf(
    *,
    model: str = "v2",
    model_sha256: str = "",
    ct: bool = False,
    flip: bool = True,
    sharpen: bool = True,
    device: str = "auto",
    use_gpu: bool = False,
    omp_nthreads: int = 1,
    mem_gb: float = 2.0,
    output_space: str = "1mm",
    slice_thickness: Sequence[float] = (),
    slice_direction: Sequence[str] = (),
    name: str = "synthsr_wf",
):
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
    model
        Registry name (``v2``, ``lowfield``, ``v1``, ``hyperfine``) or path to a Keras .h5.
    model_sha256
        SHA-256 of the weights (part of the cache key).
    ct, flip, sharpen
        SynthSR options.
    device, use_gpu, omp_nthreads
        Where and with how many threads it runs; they do not change results (not hashed).
    mem_gb
        Memory estimate for the scheduler (see :func:`synthsr_nipype.bids.estimate_mem_gb`).
    output_space
        ``native``: also the output resampled onto the input scan's grid (``out_native``).
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
        With ``output_space="native"``: the output on the input's grid.
    """
    from ..model.registry import model_argument, model_label, model_notes

    model = model_argument(model)  # a relative path names nothing in the node's own folder
    workflow = pe.Workflow(name=name)
    options = [text for on, text in ((ct, "CT mode"), (flip, "left-right flip averaging"),
                                     (sharpen, "sharpening")) if on]
    notes = model_notes(model)
    if notes is not None:  # a model of our own: its own text, never the published models' validation
        workflow.__desc__ = notes.methods + (f" Options: {', '.join(options)}." if options else "")
    else:
        workflow.__desc__ = (
            "Each anatomical scan was converted into a synthetic 1 mm isotropic MP-RAGE-like "
            "T1-weighted image with SynthSR [@synthsr1; @synthsr2"
            # the low-field and Hyperfine models come from the Radiology paper
            f"{'; @hyperfine' if model_label(model) in ('lowfield', 'hyperfine') else ''}] "
            f"(model `{model_label(model)}`{''.join(', ' + o for o in options)}), "
            "as implemented in PyTorch by synthsr-nipype."
        )
    inputnode = pe.Node(IdentityInterface(fields=["in_files"]), name="inputnode")
    outputnode = pe.Node(IdentityInterface(
        fields=["out_file", "out_json", "out_reliability", "out_reliability_json", "out_native"]), name="outputnode")
    synthsr = pe.Node(
        SynthSR(
            model=model,
            ct=ct,
            flip=flip,
            sharpen=sharpen,
            device=device,
            use_gpu=use_gpu,
            num_threads=omp_nthreads,
            output_space=output_space,
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
    if output_space == "native":
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
