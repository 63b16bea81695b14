"""SynthSeg (FreeSurfer's ``mri_synthseg``) in PyTorch: one API, :func:`run`, and the writers of its files.

Names resolve on first use (`lazy_loader <https://scientific-python.org/specs/spec-0001/>`_), so
importing the package loads no torch.
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(__name__, submod_attrs={
    "api": ["run", "load_for", "SynthSegResult"],
    "writers": ["write_outputs", "volumes_csv", "qc_csv"],
})
