"""BIDS layer: pure functions from a dataset to a plan, and derivatives naming/sidecars."""

from ..errors import BIDSInputError
from .derivatives import (
    bids_uri,
    build_derivative_relpath,
    fused_output_entities,
    scan_output_entities,
    write_dataset_description,
)
from .grouping import Group, choose_reference, group_scans
from .labels import normalize_label, normalize_labels
from .plan import GroupPlan, Job, Plan, build_plan, estimate_mem_gb, format_plan
from .query import DEFAULT_SUFFIXES, build_layout, collect_anat, load_bids_filters
from .scan import ScanInfo, describe_scan, header_problem

__all__ = [
    "BIDSInputError",
    "DEFAULT_SUFFIXES",
    "Group",
    "GroupPlan",
    "Job",
    "Plan",
    "ScanInfo",
    "bids_uri",
    "build_derivative_relpath",
    "build_layout",
    "build_plan",
    "choose_reference",
    "collect_anat",
    "describe_scan",
    "estimate_mem_gb",
    "format_plan",
    "fused_output_entities",
    "group_scans",
    "header_problem",
    "load_bids_filters",
    "normalize_label",
    "normalize_labels",
    "scan_output_entities",
    "write_dataset_description",
]
