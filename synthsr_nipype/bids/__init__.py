"""BIDS layer: pure functions from a dataset to a plan, and derivatives naming/sidecars.

Names resolve on first use (`lazy_loader <https://scientific-python.org/specs/spec-0001/>`_): the CLI
parser reads ``bids.query.DEFAULT_SUFFIXES`` without loading nibabel, torch or pybids.
"""

import lazy_loader

from ..errors import BIDSInputError as BIDSInputError

__getattr__, __dir__, __all__ = lazy_loader.attach(__name__, submod_attrs={
    "derivatives": ["bids_uri", "build_derivative_relpath", "fused_output_entities", "scan_output_entities",
                    "write_dataset_description"],
    "grouping": ["Group", "choose_reference", "group_scans"],
    "labels": ["normalize_label", "normalize_labels"],
    "plan": ["GroupPlan", "Job", "Plan", "build_plan", "estimate_mem_gb", "format_plan"],
    "query": ["DEFAULT_SUFFIXES", "build_layout", "collect_anat", "load_bids_filters"],
    "scan": ["ScanInfo", "describe_scan", "header_problem"],
})
__all__.append("BIDSInputError")
