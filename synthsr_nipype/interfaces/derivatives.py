"""The derivatives sink: put a finished file and its sidecar at its BIDS name, atomically."""

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
    in_file = File(exists=True, mandatory=True, desc="file to store")
    in_json = InputMultiObject(
        File(exists=True), desc="metadata JSON files merged (in order) into the sidecar"
    )
    in_metadata = traits.Dict(desc="metadata merged after in_json (e.g. a node's provenance)")
    metadata = traits.Dict(usedefault=True, desc="fixed metadata merged last (descriptions)")
    source_entities = traits.Dict(desc="entities of the group (subject, session), under entities")
    entities = traits.Dict(mandatory=True, desc="BIDS entities of the output")
    extension = traits.Enum(
        ".nii.gz", ".txt", ".h5", ".tsv", usedefault=True, desc="extension of the stored file"
    )
    sources = traits.List(traits.Str, mandatory=True, desc="BIDS URIs of the inputs")
    sidecar = traits.Bool(True, usedefault=True, desc="write a JSON sidecar")
    provenance = traits.Bool(
        True, usedefault=True,
        desc="add this package's name and version and, for an image, SkullStripped and the grid "
        "(SynthSR outputs); off when in_metadata carries another tool's provenance",
    )


class _DerivativesSinkOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="file at its derivatives path")
    out_json = File(desc="its JSON sidecar (undefined without one)")


class DerivativesSink(SimpleInterface):
    """Copy ``in_file`` to ``base_directory/<pybids path from the entities>`` with a sidecar.

    The bytes are copied unchanged; the sidecar gets the merged metadata and Sources. Both are
    written to a temporary file and renamed: a derivative exists complete or not at all. The
    file is renamed last, so a derivative always has its sidecar. Sinks always run (they only
    copy), so deleted outputs come back on a rerun (niworkflows' ``DerivativesDataSink`` does
    the same).
    """

    input_spec = _DerivativesSinkInputSpec
    output_spec = _DerivativesSinkOutputSpec
    _always_run = True

    def _run_interface(self, runtime):
        import nibabel as nib

        from ..atomic import atomic_copy, atomic_write_json
        from ..bids.derivatives import build_derivative_relpath
        from ..bids.sidecars import derivative_sidecar

        root = Path(self.inputs.base_directory)
        group = self.inputs.source_entities if isdefined(self.inputs.source_entities) else {}
        entities = {**group, **self.inputs.entities}
        extension = self.inputs.extension
        out_file = root / build_derivative_relpath(entities, extension=extension)
        if self.inputs.sidecar:
            out_json = root / build_derivative_relpath(entities, extension=".json")
            metadata: dict = {}
            for path in self.inputs.in_json if isdefined(self.inputs.in_json) else []:
                metadata.update(json.loads(Path(path).read_text()))
            if isdefined(self.inputs.in_metadata):
                metadata.update(self.inputs.in_metadata)
            metadata.update(self.inputs.metadata)
            image = extension == ".nii.gz" and self.inputs.provenance
            sidecar = derivative_sidecar(
                metadata, sources=list(self.inputs.sources),
                img=nib.load(self.inputs.in_file) if image else None,
                provenance=self.inputs.provenance,
            )
            atomic_write_json(out_json, sidecar)
            self._results["out_json"] = str(out_json)
        atomic_copy(self.inputs.in_file, out_file)
        self._results["out_file"] = str(out_file)
        return runtime
