"""SynthSeg (FreeSurfer's ``mri_synthseg``) in PyTorch: one API, :func:`run`, and the writers of its files.

Names resolve on first use (:mod:`synthsr_nipype.lazy`), so importing the package loads no torch.
"""

from ..lazy import lazy_exports

_EXPORTS = {
    "run": "api",
    "load_for": "api",
    "SynthSegResult": "api",
    "write_outputs": "writers",
    "volumes_csv": "writers",
    "qc_csv": "writers",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
