"""Rigid registration + voxel-wise fusion of a group's SynthSR outputs, as an interface."""

from __future__ import annotations

from pathlib import Path

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    InputMultiObject,
    OutputMultiObject,
    SimpleInterface,
    TraitedSpec,
    traits,
)


class _RigidFusionInputSpec(BaseInterfaceInputSpec):
    in_files = InputMultiObject(File(exists=True), mandatory=True, desc="SynthSR outputs")
    reference_index = traits.Int(0, usedefault=True, desc="index of the reference output")
    method = traits.Enum("median", "mean", usedefault=True, desc="voxel-wise combination")
    reliability_files = InputMultiObject(
        File(exists=True), desc="each output's reliability map (same order): the fused image gets its own map"
    )
    # paths, not File traits: only the headers' geometry is read, and the outputs' hashes already follow the scans
    scan_files = traits.List(traits.List(traits.Str),
                             desc="with reliability_files: each output's input scans (its channels, same order), "
                                  "for the fused image's UncoveredFraction")
    slice_thickness = traits.List(traits.List(traits.Float),
                                  desc="per scan of scan_files: BIDS SliceThickness (mm), 0 where unknown")
    slice_direction = traits.List(traits.List(traits.Str),
                                  desc="per scan of scan_files: BIDS SliceEncodingDirection, '' where unknown")


class _RigidFusionOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="fused image on the reference output's grid")
    out_json = File(exists=True, desc="fusion metadata")
    out_transforms = OutputMultiObject(
        File(), desc="rigid transforms (ITK text, LPS; identity for the reference), one per input"
    )
    out_reliability = File(desc="the fused image's reliability map (with reliability_files)")
    out_reliability_json = File(desc="its formula and QC numbers")


class RigidFusion(SimpleInterface):
    """Fuse SynthSR outputs (:func:`synthsr_nipype.inference.fusion.fuse_images`)."""

    input_spec = _RigidFusionInputSpec
    output_spec = _RigidFusionOutputSpec

    def _run_interface(self, runtime):
        from nipype.interfaces.base import isdefined

        from ..atomic import atomic_copy, atomic_write_json, atomic_write_nifti
        from ..inference import reliability
        from ..inference.fusion import fuse_images, scan_grids, write_itk_affine

        files = list(self.inputs.in_files)
        cwd = Path(runtime.cwd)
        out_file = cwd / "fused.nii.gz"
        scans = None
        if isdefined(self.inputs.scan_files):
            per_output = len(self.inputs.scan_files)
            thickness = self.inputs.slice_thickness if isdefined(self.inputs.slice_thickness) else [None] * per_output
            direction = self.inputs.slice_direction if isdefined(self.inputs.slice_direction) else [None] * per_output
            if not len(files) == per_output == len(thickness) == len(direction):
                raise ValueError(f"{per_output} scan lists (and their slice geometry) for {len(files)} outputs")
            scans = [scan_grids(paths, thick or None, dirs or None)
                     for paths, thick, dirs in zip(self.inputs.scan_files, thickness, direction)]
        result = fuse_images(
            files,
            reference=self.inputs.reference_index,
            method=self.inputs.method,
            # One ITK thread: multi-threaded metric sums differ in the last bits between runs.
            threads=1,
            maps=list(self.inputs.reliability_files) if isdefined(self.inputs.reliability_files) else None,
            scans=scans,
        )
        if len(files) == 1:
            atomic_copy(files[0], out_file)  # pass-through keeps the bytes
        else:
            atomic_write_nifti(out_file, result.image)
        transforms = []
        for i, matrix in enumerate(result.transforms):
            transforms.append(str(write_itk_affine(matrix, cwd / f"transform{i:02d}.txt")))
        if result.reliability is not None:
            qc = result.metadata["ReliabilityQC"]
            rel_file = atomic_write_nifti(cwd / "reliability.nii.gz",
                                          reliability.map_image(result.reliability, result.image))
            rel_json = atomic_write_json(cwd / "reliability.json", reliability.sidecar(qc, fused=len(files) > 1))
            self._results.update(out_reliability=str(rel_file), out_reliability_json=str(rel_json))
        out_json = cwd / "fusion.json"
        atomic_write_json(out_json, result.metadata)
        self._results.update(
            out_file=str(out_file), out_json=str(out_json), out_transforms=transforms
        )
        return runtime
