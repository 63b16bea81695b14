"""SynthSeg as a Nipype interface: one image in; segmentation, volumes (and optionally posteriors, QC) out.

A thin wrapper over :func:`synthsr_nipype.segmentation.run` and its writers.
"""

from __future__ import annotations

from pathlib import Path

from nipype.interfaces.base import (
    Directory,
    File,
    SimpleInterface,
    TraitedSpec,
    traits,
)

from .runtime import TorchRuntimeInputSpec, node_device


class _SynthSegInputSpec(TorchRuntimeInputSpec):
    in_file = File(exists=True, mandatory=True, desc="image to segment (any contrast and resolution)")
    robust = traits.Bool(False, usedefault=True, desc="SynthSeg-robust (implies fast)")
    parc = traits.Bool(False, usedefault=True, desc="cortical parcellation")
    fast = traits.Bool(False, usedefault=True, desc="no flip TTA, simpler post-processing")
    qc = traits.Bool(False, usedefault=True, desc="automated QC scores (qc.csv)")
    ct = traits.Bool(False, usedefault=True, desc="CT in Hounsfield units")
    v1 = traits.Bool(False, usedefault=True, desc="SynthSeg 1.0")
    posteriors = traits.Bool(False, usedefault=True, desc="also write the posteriors")
    keep_geometry = traits.Bool(False, usedefault=True,
                                desc="segmentation on the input's grid (mri_synthseg --keepgeom; nearest neighbour)")
    tissue_probsegs = traits.Bool(False, usedefault=True,
                                  desc="also write the CSF, GM and WM posteriors (each the sum of its labels' "
                                       "posteriors, by the dseg.tsv mapping) on the input's grid")
    thickness_posteriors = traits.Bool(False, usedefault=True,
                                       desc="also write the GM (cortex) and WM posteriors DiReCT takes")
    models_dir = Directory(exists=True, desc="folder of the synthseg_*.h5 files (default: the registry's folders)")


class _SynthSegOutputSpec(TraitedSpec):
    out_seg = File(exists=True, desc="label map (int32, FreeSurfer labels)")
    out_volumes = File(exists=True, desc="volumes CSV (mri_synthseg --vol format)")
    out_posteriors = File(desc="posteriors (float32, one volume per label), when asked for")
    out_qc = File(desc="QC scores CSV, when asked for")
    out_resampled = File(desc="the 1 mm image the networks saw, when the input was resampled")
    volumes = traits.Dict(desc="structure -> volume (mm^3), the CSV's columns")
    qc_scores = traits.Dict(desc="QC class -> score, when asked for")
    version = traits.Str(desc="SynthSeg version run")
    probsegs = traits.List(File(exists=True), desc="CSF, GM, WM posteriors (tissue_probsegs)")
    thickness_gm = File(desc="cortex posterior for DiReCT (thickness_posteriors)")
    thickness_wm = File(desc="white-matter (+ deep structures) posterior for DiReCT (thickness_posteriors)")


class SynthSeg(SimpleInterface):
    """Run SynthSeg (:func:`synthsr_nipype.segmentation.run`) on one image.

    Examples
    --------
    >>> node = SynthSeg(in_file="sub-01_T1w.nii.gz", parc=True)  # doctest: +SKIP
    """

    input_spec = _SynthSegInputSpec
    output_spec = _SynthSegOutputSpec

    def _run_interface(self, runtime):
        from ..morphometry.derivatives import TISSUES
        from ..morphometry.freesurfer import posterior_sums
        from ..morphometry.labels import tissue_labels
        from ..morphometry.thickness import SYNTHSEG_DIRECT
        from ..segmentation import run, write_outputs

        inputs = self.inputs
        sums = inputs.tissue_probsegs or inputs.thickness_posteriors
        result = run(inputs.in_file, robust=inputs.robust, parc=inputs.parc, fast=inputs.fast, qc=inputs.qc,
                     ct=inputs.ct, v1=inputs.v1, posteriors=inputs.posteriors or sums,
                     keep_geometry=inputs.keep_geometry, threads=inputs.num_threads,
                     device=node_device(inputs), models_dir=inputs.models_dir or None)
        cwd = Path(runtime.cwd)
        written = write_outputs(
            result, cwd / "synthseg.nii.gz", volumes=cwd / "volumes.csv",
            posteriors=cwd / "posteriors.nii.gz" if inputs.posteriors else None,  # the 4-D file only if asked
            resampled=cwd / "resampled.nii.gz", qc=cwd / "qc.csv" if inputs.qc else None)
        self._results["out_seg"] = str(written["seg"])
        self._results["out_volumes"] = str(written["volumes"])
        for key, out in (("posteriors", "out_posteriors"), ("qc", "out_qc"), ("resampled", "out_resampled")):
            if key in written:
                self._results[out] = str(written[key])
        self._results["volumes"] = dict(result.volumes)
        self._results["qc_scores"] = dict(result.qc or {})
        self._results["version"] = result.version
        if inputs.tissue_probsegs:
            tissues = tissue_labels()
            paths = posterior_sums(result.posteriors, result.labels, {t: tissues[t] for t in TISSUES},
                                   inputs.in_file, cwd, prefix="probseg")
            self._results["probsegs"] = [paths[t] for t in TISSUES]
        if inputs.thickness_posteriors:
            paths = posterior_sums(result.posteriors, result.labels, SYNTHSEG_DIRECT, inputs.in_file, cwd,
                                   prefix="direct")
            self._results["thickness_gm"], self._results["thickness_wm"] = paths["GM"], paths["WM"]
        return runtime
