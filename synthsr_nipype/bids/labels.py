"""Participant and session labels as users type them (with or without prefix)."""

from __future__ import annotations

import re
from collections.abc import Iterable

from ..errors import BIDSInputError

# BIDS labels are alphanumeric only: anything else (``../x``, ``a_b``) could escape the
# dataset folder or break entity parsing, so it is refused rather than cleaned up.
_LABEL_RE = re.compile(r"^[A-Za-z0-9]+$")


def normalize_label(label: str, prefix: str) -> str:
    """Return ``label`` without its ``prefix-`` (e.g. ``sub-``), refusing non-BIDS labels.

    >>> normalize_label("sub-01", "sub")
    '01'
    >>> normalize_label("01", "sub")
    '01'
    """
    text = str(label).strip()
    if text.startswith(f"{prefix}-"):
        text = text[len(prefix) + 1 :]
    if not _LABEL_RE.match(text):
        raise BIDSInputError(
            f"invalid {prefix} label {label!r}: BIDS labels are letters and digits only"
        )
    return text


def normalize_labels(labels: Iterable[str] | None, prefix: str) -> list[str] | None:
    """Normalize a list of labels (``None`` stays ``None``: no selection); duplicates dropped."""
    if labels is None:
        return None
    out: list[str] = []
    for label in labels:
        norm = normalize_label(label, prefix)
        if norm not in out:
            out.append(norm)
    return out or None
