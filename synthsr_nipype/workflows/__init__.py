"""Nipype workflows: one scan (:func:`init_synthsr_wf`), one group, a whole BIDS dataset."""

from .base import (
    citation_markdown,
    collect_descriptions,
    init_single_subject_wf,
    init_synthsr_bids_wf,
)
from .synthsr import init_synthsr_wf

__all__ = [
    "citation_markdown",
    "collect_descriptions",
    "init_single_subject_wf",
    "init_synthsr_bids_wf",
    "init_synthsr_wf",
]
