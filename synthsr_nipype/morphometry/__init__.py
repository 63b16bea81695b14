"""Downstream measurement after SynthSR: segmentation, volumetry, TBM and group statistics.

Everything here is a pure function of files and arrays; the Nipype interfaces in
:mod:`synthsr_nipype.interfaces.segmentation` / :mod:`~synthsr_nipype.interfaces.freesurfer`
only validate inputs, call one of these functions and name the outputs.
"""

TEMPLATE_SPACE = "MNI152NLin2009aSym"
#: ``synthseg`` is the package's own port (synthsr_nipype.segmentation); ``synthseg-fs`` FreeSurfer's mri_synthseg
BACKENDS = ("ants", "synthseg", "synthseg-fs", "recon-all", "samseg")
