"""The derivatives sink: put a finished image and its sidecar at its BIDS name, atomically."""

from __future__ import annotations

import json
from pathlib import Path

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    InputMultiObject,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)


class _DerivativesSinkInputSpec(BaseInterfaceInputSpec):
    base_directory = traits.Str(mandatory=True, desc="derivatives dataset root (output_dir)")
    in_file = File(exists=True, mandatory=True, desc="image to store")
    in_json = InputMultiObject(
        File(exists=True), desc="metadata JSON files merged (in order) into the sidecar"
    )
    entities = traits.Dict(mandatory=True, desc="BIDS entities of the output")
    extension = traits.Enum(".nii.gz", ".txt", ".h5", usedefault=True, desc="extension of the stored file")
    sources = traits.List(traits.Str, mandatory=True, desc="BIDS URIs of the inputs")
    metadata = traits.Dict(desc="metadata merged last, over in_json")


class _DerivativesSinkOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="file at its derivatives path")
    out_json = File(exists=True, desc="its JSON sidecar")


class DerivativesSink(SimpleInterface):
    """Copy ``in_file`` to ``base_directory/<pybids path from entities>`` with a sidecar.

    The bytes are copied unchanged; the sidecar gets Sources and, for an image, SkullStripped
    and the grid description. Both are written to a temporary file and renamed: a derivative exists
    complete or not at all. The image is renamed last, so an image always has its sidecar.
    """

    input_spec = _DerivativesSinkInputSpec
    output_spec = _DerivativesSinkOutputSpec

    def _run_interface(self, runtime):
        import nibabel as nib

        from ..atomic import atomic_copy, atomic_write_json
        from ..bids.derivatives import build_derivative_relpath
        from ..bids.sidecars import derivative_sidecar

        root = Path(self.inputs.base_directory)
        entities = dict(self.inputs.entities)
        extension = self.inputs.extension
        out_file = root / build_derivative_relpath(entities, extension=extension)
        out_json = root / build_derivative_relpath(entities, extension=".json")
        metadata: dict = {}
        for path in self.inputs.in_json or []:
            metadata.update(json.loads(Path(path).read_text()))
        if isdefined(self.inputs.metadata):
            metadata.update(self.inputs.metadata)
        img = nib.load(self.inputs.in_file) if extension == ".nii.gz" else None
        sidecar = derivative_sidecar(metadata, sources=list(self.inputs.sources), img=img)
        atomic_write_json(out_json, sidecar)
        atomic_copy(self.inputs.in_file, out_file)
        self._results.update(out_file=str(out_file), out_json=str(out_json))
        return runtime
