"""SynthSR as a Nipype interface (one inference: channel images in, 1 mm image + JSON out)."""

from __future__ import annotations

import warnings
from pathlib import Path

from nipype.interfaces.base import (
    File,
    InputMultiObject,
    SimpleInterface,
    TraitedSpec,
    traits,
)

from .runtime import TorchRuntimeInputSpec, node_device


class _SynthSRInputSpec(TorchRuntimeInputSpec):
    in_files = InputMultiObject(
        File(exists=True), mandatory=True, desc="one image per model channel (T1, T2 for Hyperfine)"
    )
    model = traits.Str("v2", usedefault=True, desc="registry name or path to a Keras .h5")
    model_sha256 = traits.Str(
        desc="SHA-256 of the weights: part of the cache key, so new weights at the same path "
        "invalidate finished nodes"
    )
    ct = traits.Bool(False, usedefault=True, desc="input is a CT scan")
    flip = traits.Bool(True, usedefault=True, desc="average with the left-right flipped prediction")
    sharpen = traits.Bool(True, usedefault=True, desc="sharpen the output")
    reliability = traits.Bool(True, usedefault=True,
                              desc="also write the output's reliability map and its QC numbers (docs/qc.md)")
    slice_thickness = traits.List(traits.Float, desc="per input: BIDS SliceThickness (mm), 0 where unknown; "
                                  "slice gaps lower the reliability between slices")
    slice_direction = traits.List(traits.Str, desc="per input: BIDS SliceEncodingDirection (i, j, k), '' "
                                  "where unknown (then the axis of the largest spacing)")
    output_space = traits.Enum("1mm", "native", usedefault=True,
                               desc="native: also write the output resampled onto the first input's grid")
    out_name = traits.Str("synthsr.nii.gz", usedefault=True, hash_files=False, desc="output file name")


class _SynthSROutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="synthetic 1 mm MP-RAGE-like image")
    out_json = File(exists=True, desc="provenance (model, SHA-256, flags, version, header warnings, QC numbers)")
    out_reliability = File(desc="reliability map on the output's grid (float 0-1)")
    out_reliability_json = File(desc="the map's formula, inputs and QC numbers")
    out_native = File(desc="the output on the first input's grid (output_space native)")


class SynthSR(SimpleInterface):
    """Run SynthSR (:func:`synthsr_nipype.inference.run`) on one scan or one set of channels.

    Examples
    --------
    >>> node = SynthSR(in_files=["sub-01_T1w.nii.gz", "sub-01_FLAIR.nii.gz"], model="v2")
    >>> node.inputs.out_name, node.inputs.device
    ('synthsr.nii.gz', 'auto')
    """

    input_spec = _SynthSRInputSpec
    output_spec = _SynthSROutputSpec

    def _run_interface(self, runtime):
        from ..atomic import atomic_write_json, atomic_write_nifti
        from ..bids.sidecars import synthsr_metadata
        from ..inference import native_image, reliability, synthesise
        from ..inference.checks import HeaderWarning
        from ..model import load_model
        from ..model.registry import model_label, model_notes

        device = node_device(self.inputs)
        net = load_model(self.inputs.model, device="cpu")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", HeaderWarning)
            syn = synthesise(
                list(self.inputs.in_files),
                model=net,
                ct=self.inputs.ct,
                flip=self.inputs.flip,
                sharpen=self.inputs.sharpen,
                device=device,
                threads=self.inputs.num_threads,
            )
        notes = [f"{Path(w.message.source).name}: {w.message.note}" for w in caught
                 if isinstance(w.message, HeaderWarning)]
        for w in caught:  # anything else goes on as usual
            if not isinstance(w.message, HeaderWarning):
                warnings.showwarning(w.message, w.category, w.filename, w.lineno)
        image = syn.image
        cwd = Path(runtime.cwd)
        out_file = cwd / self.inputs.out_name
        atomic_write_nifti(out_file, image)
        if self.inputs.output_space == "native":
            self._results["out_native"] = str(atomic_write_nifti(cwd / "native.nii.gz",
                                                                 native_image(image, syn.volumes[0])))
        meta = synthsr_metadata(
            model_name=model_label(net.name),
            model_sha256=net.sha256,
            channels=[Path(f).name for f in self.inputs.in_files],
            ct=self.inputs.ct,
            flip=self.inputs.flip,
            sharpen=self.inputs.sharpen,
            header_warnings=notes,
            model_notes=(model_notes(net.name).note if model_notes(net.name) else None),
        )
        if self.inputs.reliability:
            rel = syn.reliability(self.inputs.slice_thickness or None, self.inputs.slice_direction or None)
            meta["ReliabilityQC"] = rel.qc
            meta["QCFlags"] = reliability.qc_flags(rel.qc)
            rel_file = atomic_write_nifti(cwd / "reliability.nii.gz", reliability.map_image(rel.reliability, image))
            rel_json = atomic_write_json(cwd / "reliability.json", reliability.sidecar(rel.qc))
            self._results.update(out_reliability=str(rel_file), out_reliability_json=str(rel_json))
        out_json = cwd / "synthsr.json"
        atomic_write_json(out_json, meta)
        self._results["out_file"] = str(out_file)
        self._results["out_json"] = str(out_json)
        return runtime
