"""Grouping of scans by subject and session, and the choice of each group's reference."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .labels import group_label
from .scan import ScanInfo

#: Tie-break order of contrasts for the reference: T1w is closest to the MP-RAGE target.
SUFFIX_PRIORITY: tuple[str, ...] = ("T1w", "T2w", "FLAIR")


@dataclass
class Group:
    """The scans of one subject and session (``session`` is None without sessions)."""

    subject: str
    session: str | None
    scans: list[ScanInfo] = field(default_factory=list)  # usable, sorted by name
    skipped: list[ScanInfo] = field(default_factory=list)  # unusable, with .reason

    @property
    def label(self) -> str:
        return group_label(self.subject, self.session)


def group_scans(scans: Iterable[ScanInfo]) -> list[Group]:
    """One group per (subject, session); subject alone when the scan has no session."""
    groups: dict[tuple[str, str], Group] = {}
    for scan in scans:
        key = (scan.subject, scan.session or "")
        group = groups.setdefault(key, Group(subject=scan.subject, session=scan.session))
        (group.scans if scan.usable else group.skipped).append(scan)
    for group in groups.values():
        group.scans.sort(key=lambda s: s.name)
        group.skipped.sort(key=lambda s: s.name)
    return [groups[k] for k in sorted(groups)]


def reference_sort_key(scan: ScanInfo) -> tuple:
    """Smallest voxel volume first; ties: T1w, T2w, FLAIR, others; then file name."""
    try:
        rank = SUFFIX_PRIORITY.index(scan.suffix)
    except ValueError:
        rank = len(SUFFIX_PRIORITY)
    # Rounded so that float32 noise in zooms does not decide between equal resolutions.
    return (round(scan.voxel_volume, 4), rank, scan.name)


def _matches(scan: ScanInfo, query: Mapping[str, Any]) -> bool:
    for key, wanted in query.items():
        value = scan.suffix if key == "suffix" else scan.entities.get(key)
        # pybids' Query.ANY (alias of REQUIRED) / Query.NONE: "*" / null in the filter file.
        special = getattr(wanted, "name", None)
        if special in ("ANY", "REQUIRED", "NONE"):
            if (value is not None) != (special != "NONE"):
                return False
            continue
        options = wanted if isinstance(wanted, (list, tuple)) else [wanted]
        if str(value) not in {str(o) for o in options}:
            return False
    return True


def choose_reference(
    scans: list[ScanInfo], reference_filter: Mapping[str, Any] | None = None
) -> tuple[ScanInfo | None, str]:
    """Pick the reference scan of a group; returns ``(scan, why)``.

    ``reference_filter`` (entities, e.g. ``{"suffix": "T2w"}``) restricts the candidates;
    when it matches nothing in the group the default rule applies and ``why`` says so.
    """
    if not scans:
        return None, "no usable scan"
    candidates = list(scans)
    why = "smallest voxel volume"
    if reference_filter:
        chosen = [s for s in scans if _matches(s, reference_filter)]
        if chosen:
            candidates, why = chosen, f"reference filter {dict(reference_filter)}"
        else:
            why = f"reference filter {dict(reference_filter)} matched nothing; smallest voxel volume"
    return min(candidates, key=reference_sort_key), why
