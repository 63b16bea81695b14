"""Nipype interfaces of the FreeSurfer backends that nipype lacks (mri_synthseg, run_samseg),
and the step that turns any FreeSurfer segmentation into our volumetry outputs.

recon-all and mri_segstats use nipype's own ``ReconAll`` and ``SegStats``.
"""

from __future__ import annotations

import os

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    CommandLine,
    CommandLineInputSpec,
    Directory,
    File,
    InputMultiObject,
    SimpleInterface,
    TraitedSpec,
    traits,
)

from ..morphometry import freesurfer as fs


class _SynthSegInputSpec(CommandLineInputSpec):
    in_file = File(exists=True, mandatory=True, argstr="--i %s", position=0, desc="input image")
    out_file = File(argstr="--o %s", position=1, name_source=["in_file"], name_template="%s_synthseg.nii.gz",
                    keep_extension=False, hash_files=False, desc="output segmentation")
    vol_file = File(argstr="--vol %s", name_source=["in_file"], name_template="%s_volumes.csv",
                    keep_extension=False, hash_files=False, desc="volumes CSV")
    robust = traits.Bool(True, usedefault=True, argstr="--robust", desc="robust model (clinical scans)")
    parc = traits.Bool(False, usedefault=True, argstr="--parc", desc="cortical parcellation")
    threads = traits.Int(1, usedefault=True, argstr="--threads %d", nohash=True, desc="CPU threads")
    cpu = traits.Bool(True, usedefault=True, argstr="--cpu", nohash=True, desc="force CPU")


class _SynthSegOutputSpec(TraitedSpec):
    out_file = File(exists=True)
    vol_file = File(exists=True)


class MRISynthSeg(CommandLine):
    r"""FreeSurfer ``mri_synthseg`` (contrast- and resolution-agnostic segmentation).

    >>> seg = MRISynthSeg(in_file="sub-01_T1w.nii.gz")
    >>> print(seg.cmdline.replace(" --", "\n--"))
    mri_synthseg
    --i sub-01_T1w.nii.gz
    --o sub-01_T1w_synthseg.nii.gz
    --cpu
    --robust
    --threads 1
    --vol sub-01_T1w_volumes.csv
    """

    _cmd = "mri_synthseg"
    input_spec = _SynthSegInputSpec
    output_spec = _SynthSegOutputSpec


class _SamsegInputSpec(CommandLineInputSpec):
    in_files = InputMultiObject(File(exists=True), mandatory=True, argstr="--input %s", sep=" ",
                                desc="co-registered input image(s)")
    output_dir = Directory("samseg", usedefault=True, argstr="--output %s", hash_files=False,
                           desc="output folder")
    threads = traits.Int(1, usedefault=True, argstr="--threads %d", nohash=True, desc="CPU threads")


class _SamsegOutputSpec(TraitedSpec):
    seg_file = File(exists=True, desc="seg.mgz")
    stats_file = File(exists=True, desc="samseg.stats (volumes)")
    tiv_file = File(exists=True, desc="sbtiv.stats (intracranial volume)")


class SAMSeg(CommandLine):
    """FreeSurfer's cross-sectional SAMSEG (``run_samseg``).

    >>> SAMSeg(in_files=["sub-01_T1w.nii.gz", "sub-01_FLAIR.nii.gz"], threads=4).cmdline
    'run_samseg --input sub-01_T1w.nii.gz sub-01_FLAIR.nii.gz --output samseg --threads 4'
    """

    _cmd = "run_samseg"
    input_spec = _SamsegInputSpec
    output_spec = _SamsegOutputSpec

    def _list_outputs(self):
        out = os.path.abspath(self.inputs.output_dir)
        return {
            "seg_file": os.path.join(out, "seg.mgz"),
            "stats_file": os.path.join(out, "samseg.stats"),
            "tiv_file": os.path.join(out, "sbtiv.stats"),
        }


class _FSVolInputSpec(BaseInterfaceInputSpec):
    seg_file = File(exists=True, mandatory=True, desc="FreeSurfer label map (any grid)")
    reference = File(exists=True, mandatory=True, desc="the SynthSR T1w: grid of the output dseg")
    volumes = InputMultiObject(File(exists=True), mandatory=True,
                               desc="synthseg CSV, or FreeSurfer stats file(s) "
                                    "(samseg.stats + sbtiv.stats, aseg segstats)")
    backend = traits.Enum("synthseg", "synthseg-fs", "samseg", "recon-all", mandatory=True)
    software_version = traits.Str(desc="the segmenter's version (default: FreeSurfer's build stamp)")
    qc_scores = traits.Dict(desc="the segmenter's QC scores (SynthSeg --qc), written to the sidecars")


class _FSVolOutputSpec(TraitedSpec):
    dseg = File(exists=True)
    dseg_tsv = File(exists=True)
    morph_tsv = File(exists=True)
    metadata = traits.Dict()


class FreeSurferVolumetry(SimpleInterface):
    """A FreeSurfer segmentation and its volume table → ``dseg`` on the SynthSR grid + ``morph.tsv``."""

    input_spec = _FSVolInputSpec
    output_spec = _FSVolOutputSpec

    def _run_interface(self, runtime):
        rows = []
        for vol in self.inputs.volumes:
            parse = fs.parse_synthseg_volumes if vol.endswith(".csv") else fs.parse_freesurfer_stats
            rows += parse(vol)
        self._results.update(fs.freesurfer_volumetry(self.inputs.seg_file, self.inputs.reference, runtime.cwd, rows))
        self._results["metadata"] = fs.volumetry_metadata(
            self.inputs.backend, software_version=self.inputs.software_version or None,
            qc_scores=self.inputs.qc_scores or None)
        return runtime



