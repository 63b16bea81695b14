"""Nipype interfaces of the embedded ``ants`` backend and of the morphometry derivatives.

Thin wrappers: each validates its inputs, calls one function of
:mod:`synthsr_nipype.morphometry` and names the outputs.
"""

from __future__ import annotations

import os

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    traits,
)

from ..morphometry import ants_backend, thickness
from ..morphometry.ants_backend import DEFAULT_SEED


class _ITKInputSpec(BaseInterfaceInputSpec):
    # not nohash: registration, Atropos and DiReCT are bit-identical only for a fixed thread count (1 = reproducible)
    num_threads = traits.Int(1, usedefault=True, desc="ITK threads")


class _TemplateInputSpec(_ITKInputSpec):
    template_resolution = traits.Enum(1, 2, usedefault=True, desc="template grid (mm)")


class _DiReCTInputSpec(_ITKInputSpec):
    iterations = traits.Int(desc="DiReCT iterations (default: antsCorticalThickness.sh's 45)")


class _RegInputSpec(_TemplateInputSpec):
    t1w = File(exists=True, mandatory=True, desc="T1w image (the SynthSR volume)")
    seed = traits.Int(DEFAULT_SEED, usedefault=True, desc="ANTs random seed")
    skull_stripped = traits.Enum(None, True, False, usedefault=True, desc="None: decide from the image")


class _RegOutputSpec(TraitedSpec):
    skull_stripped = traits.Bool(desc="whether the T1w was found (or declared) skull-stripped")
    to_template = File(exists=True, desc="ITK composite: resamples the T1w into the template")
    from_template = File(exists=True, desc="ITK composite: resamples the template onto the T1w")
    metadata = traits.Dict(desc="provenance for sidecars")


class _AntsInterface(SimpleInterface):
    """An :mod:`~synthsr_nipype.morphometry.ants_backend` step: the options every step takes, and the
    provenance its sidecars record, from a :class:`_RegInputSpec`."""

    def _ants_options(self) -> dict:
        return {"template_resolution": self.inputs.template_resolution, "seed": self.inputs.seed,
                "num_threads": self.inputs.num_threads, "skull_stripped": self.inputs.skull_stripped}

    def _provenance(self) -> dict:
        return ants_backend.provenance(seed=self.inputs.seed, num_threads=self.inputs.num_threads,
                                       template_resolution=self.inputs.template_resolution)


class TemplateRegistration(_AntsInterface):
    """Affine + SyN registration of a T1w to MNI152NLin2009aSym (antspyx)."""

    input_spec = _RegInputSpec
    output_spec = _RegOutputSpec

    def _run_interface(self, runtime):
        res = ants_backend.register_to_template(self.inputs.t1w, runtime.cwd, **self._ants_options())
        for key in ("skull_stripped", "to_template", "from_template"):
            self._results[key] = res[key]
        self._results["metadata"] = self._provenance()
        return runtime


class _SegInputSpec(_RegInputSpec):
    from_template = File(exists=True, mandatory=True, desc="template→T1w transform (TemplateRegistration)")
    mrf = traits.Float(0.1, usedefault=True, desc="Atropos MRF smoothing factor")
    iterations = traits.Int(5, usedefault=True, desc="Atropos EM iterations")
    prior_weight = traits.Float(0.1, usedefault=True, desc="weight of the template priors")


class _SegOutputSpec(TraitedSpec):
    dseg = File(exists=True, desc="1 CSF, 2 GM, 3 WM")
    dseg_tsv = File(exists=True, desc="look-up table of dseg")
    probsegs = traits.List(File(exists=True), desc="CSF, GM, WM posteriors")
    brain_mask = File(exists=True, desc="segmentation (intracranial) mask")
    morph_tsv = File(exists=True, desc="long-format volumes incl. TIV")
    tiv = traits.Float(desc="total intracranial volume (mm³)")
    metadata = traits.Dict(desc="provenance for sidecars")


class AntsSegmentation(_AntsInterface):
    """Atropos CSF/GM/WM with warped MNI152 priors inside the intracranial mask."""

    input_spec = _SegInputSpec
    output_spec = _SegOutputSpec

    def _run_interface(self, runtime):
        res = ants_backend.segment_tissues(
            self.inputs.t1w, self.inputs.from_template, runtime.cwd, **self._ants_options(),
            mrf=self.inputs.mrf, iterations=self.inputs.iterations, prior_weight=self.inputs.prior_weight,
        )
        for key in ("dseg", "dseg_tsv", "brain_mask", "morph_tsv", "tiv"):
            self._results[key] = res[key]
        self._results["probsegs"] = [res[f"probseg_{t}"] for t in ("CSF", "GM", "WM")]
        self._results["metadata"] = {
            **self._provenance(),
            "SkullStripped": res["skull_stripped"],
            "Atropos": {"MRF": self.inputs.mrf, "Iterations": self.inputs.iterations,
                        "PriorWeight": self.inputs.prior_weight},
            "VolumeMethod": "sum of posterior probabilities inside the intracranial mask; TIV = mask volume",
        }
        return runtime


class _TBMInputSpec(_TemplateInputSpec):
    t1w = File(exists=True, mandatory=True)
    to_template = File(exists=True, mandatory=True, desc="T1w→template composite transform")
    # the Jacobian of a given transform is the same for any thread count
    num_threads = traits.Int(1, usedefault=True, nohash=True, desc="ITK threads (deterministic step)")


class _TBMOutputSpec(TraitedSpec):
    logjacobian = File(exists=True, desc="affine-free log-Jacobian determinant in template space")


class TBM(SimpleInterface):
    """Tensor-based morphometry map: log-Jacobian of the SyN warp on the template grid."""

    input_spec = _TBMInputSpec
    output_spec = _TBMOutputSpec

    def _run_interface(self, runtime):
        out = os.path.join(runtime.cwd, "space-template_desc-logjacobian_map.nii.gz")
        res = ants_backend.compute_logjacobian(
            self.inputs.to_template, self.inputs.t1w, out,
            template_resolution=self.inputs.template_resolution, num_threads=self.inputs.num_threads,
        )
        self._results["logjacobian"] = res["logjacobian"]
        return runtime


class _ThicknessInputSpec(_DiReCTInputSpec):
    dseg = File(exists=True, mandatory=True, desc="ants segmentation (1 CSF, 2 GM, 3 WM)")
    probsegs = traits.List(File(exists=True), mandatory=True, minlen=3, maxlen=3, desc="CSF, GM, WM posteriors")
    from_template = File(exists=True, mandatory=True, desc="template→T1w transform (for the hemispheres)")
    template_resolution = traits.Enum(1, 2, usedefault=True, desc="template grid (mm) of from_template")


class _ThicknessOutputSpec(TraitedSpec):
    thickness = File(exists=True, desc="thickness map (mm)")
    thickness_tsv = File(exists=True, desc="mean thickness per region and over the cortex")
    mean_thickness = traits.Float(desc="mean cortical thickness (mm)")


class _DiReCTInterface(SimpleInterface):
    """Runs one :mod:`~synthsr_nipype.morphometry.thickness` function (``_thickness``) with the DiReCT
    options and names its outputs."""

    output_spec = _ThicknessOutputSpec

    def _thickness(self, cwd: str, **direct) -> dict:
        raise NotImplementedError

    def _run_interface(self, runtime):
        res = self._thickness(runtime.cwd, num_threads=self.inputs.num_threads,
                              iterations=self.inputs.iterations or None)
        self._results.update({key: res[key] for key in ("thickness", "thickness_tsv", "mean_thickness")})
        return runtime


class CorticalThickness(_DiReCTInterface):
    """DiReCT cortical thickness from the ants backend's GM/WM posteriors, per hemisphere."""

    input_spec = _ThicknessInputSpec

    def _thickness(self, cwd: str, **direct) -> dict:
        hemis = thickness.hemisphere_regions(self.inputs.from_template, self.inputs.dseg,
                                             os.path.join(cwd, "hemispheres.nii.gz"),
                                             template_resolution=self.inputs.template_resolution)
        _, gm, wm = self.inputs.probsegs
        return thickness.cortical_thickness(self.inputs.dseg, gm, wm, cwd, regions=hemis,
                                            region_names=thickness.HEMISPHERES, **direct)


class _SynthSegThicknessInputSpec(_DiReCTInputSpec):
    dseg = File(exists=True, mandatory=True, desc="SynthSeg segmentation (FreeSurfer labels, parcels or not)")
    gm = File(exists=True, mandatory=True, desc="cortex posterior on the grid of dseg (SynthSeg)")
    wm = File(exists=True, mandatory=True, desc="white-matter + deep-structure posterior on the grid of dseg")


class SynthSegThickness(_DiReCTInterface):
    """DiReCT cortical thickness from SynthSeg's labels and posteriors, per cortical parcel (``--synthseg-parc``)
    or per hemisphere."""

    input_spec = _SynthSegThicknessInputSpec

    def _thickness(self, cwd: str, **direct) -> dict:
        return thickness.synthseg_thickness(self.inputs.dseg, self.inputs.gm, self.inputs.wm, cwd, **direct)
