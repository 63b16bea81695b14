"""BIDS layer: pure functions from a dataset to a plan, and derivatives naming/sidecars.

Names resolve on first use (:mod:`synthsr_nipype.lazy`): the CLI parser reads
``bids.query.DEFAULT_SUFFIXES`` without loading nibabel, torch or pybids.
"""

from ..errors import BIDSInputError as BIDSInputError
from ..lazy import lazy_exports

_EXPORTS = {
    "bids_uri": "derivatives",
    "build_derivative_relpath": "derivatives",
    "fused_output_entities": "derivatives",
    "scan_output_entities": "derivatives",
    "write_dataset_description": "derivatives",
    "Group": "grouping",
    "choose_reference": "grouping",
    "group_scans": "grouping",
    "normalize_label": "labels",
    "normalize_labels": "labels",
    "GroupPlan": "plan",
    "Job": "plan",
    "Plan": "plan",
    "build_plan": "plan",
    "estimate_mem_gb": "plan",
    "format_plan": "plan",
    "DEFAULT_SUFFIXES": "query",
    "build_layout": "query",
    "collect_anat": "query",
    "load_bids_filters": "query",
    "ScanInfo": "scan",
    "describe_scan": "scan",
    "header_problem": "scan",
}
__all__ = sorted([*_EXPORTS, "BIDSInputError"])
__getattr__ = lazy_exports(__name__, _EXPORTS)
