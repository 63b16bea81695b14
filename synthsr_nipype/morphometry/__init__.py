"""Downstream measurement after SynthSR: segmentation, volumetry, TBM and group statistics.

Everything here is a pure function of files and arrays; the Nipype interfaces in
:mod:`synthsr_nipype.interfaces.segmentation` / :mod:`~synthsr_nipype.interfaces.freesurfer`
only validate inputs, call one of these functions and name the outputs.
"""

TEMPLATE_SPACE = "MNI152NLin2009aSym"
#: ``synthseg`` is the package's own port (synthsr_nipype.segmentation); ``synthseg-fs`` FreeSurfer's mri_synthseg
BACKENDS = ("ants", "synthseg", "synthseg-fs", "recon-all", "samseg")
#: the backends whose GM/WM posteriors ``--thickness`` (DiReCT) can take
THICKNESS_BACKENDS = ("ants", "synthseg")
#: DiReCT's fewest iterations that give a thickness (fewer leave the map all zero; measured on the phantom of
#: tests/morphometry/test_thickness.py: 3 -> 0.60 mm, 5 -> 1.45, 10 -> 1.97, 45 -> 2.03 for a 3 mm shell)
MIN_DIRECT_ITERATIONS = 3
