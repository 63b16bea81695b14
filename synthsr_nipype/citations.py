"""The references of synthsr-nipype: the one list that the README, ``logs/CITATION.md`` and the
``HowToAcknowledge`` of ``dataset_description.json`` take their citations from."""

from __future__ import annotations

#: key -> full reference; ``[@key]`` in a workflow's description cites it in CITATION.md.
CITATIONS: dict[str, str] = {
    "synthsr1": "Iglesias JE, Billot B, Balbastre Y, et al. SynthSR: A public AI tool to turn "
    "heterogeneous clinical brain scans into high-resolution T1-weighted images for 3D "
    "morphometry. Science Advances 9(5), eadd3607 (2023).",
    "synthsr2": "Iglesias JE, Billot B, Balbastre Y, et al. Joint super-resolution and synthesis "
    "of 1 mm isotropic MP-RAGE volumes from clinical MRI exams with scans of different "
    "orientation, resolution and contrast. NeuroImage 237, 118206 (2021).",
    "hyperfine": "Iglesias JE, Schleicher R, Laguna S, et al. Quantitative brain morphometry of "
    "portable low-field-strength MRI using super-resolution machine learning. Radiology 306(3), "
    "e220522 (2023).",
    "ants": "Avants BB, Tustison NJ, Song G, et al. A reproducible evaluation of ANTs similarity "
    "metric performance in brain image registration. NeuroImage 54(3), 2033-2044 (2011).",
    "nipype": "Gorgolewski K, Burns CD, Madison C, et al. Nipype: a flexible, lightweight and "
    "extensible neuroimaging data processing framework in Python. Front Neuroinform 5, 13 (2011).",
    "pybids": "Yarkoni T, Markiewicz CJ, de la Vega A, et al. PyBIDS: Python tools for BIDS "
    "datasets. Journal of Open Source Software 4(40), 1294 (2019).",
}

#: What every use of SynthSR cites (the low-field/Hyperfine models add ``hyperfine``).
SYNTHSR_KEYS: tuple[str, ...] = ("synthsr1", "synthsr2")


def how_to_acknowledge() -> str:
    """The ``HowToAcknowledge`` text of the derivatives' ``dataset_description.json``."""
    refs = " ".join(CITATIONS[key] for key in SYNTHSR_KEYS)
    return (f"Cite SynthSR: {refs} With the Hyperfine or low-field model also: {CITATIONS['hyperfine']} "
            "And cite synthsr-nipype; logs/CITATION.md has the methods text and all references.")
