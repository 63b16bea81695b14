"""Participant and session labels as users type them (with or without prefix), the name of a
subject/session group, and labels as parts of Nipype node names."""

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


def group_label(subject: str, session: str | None = None) -> str:
    """``sub-<subject>[_ses-<session>]``, the one spelling of a group's name (file prefixes, report
    sections, console lines); labels may come with or without their prefix.

    >>> group_label("01"), group_label("sub-01", "ses-pre"), group_label("01", "pre")
    ('sub-01', 'sub-01_ses-pre', 'sub-01_ses-pre')
    """
    subject = subject[4:] if subject.startswith("sub-") else subject
    if not session:
        return f"sub-{subject}"
    session = session[4:] if session.startswith("ses-") else session
    return f"sub-{subject}_ses-{session}"


def safe_name(label: str) -> str:
    """``label`` as a part of a Nipype node name: every character that is not a letter or a digit
    becomes ``_`` (Nipype refuses dots and dashes in names).

    >>> safe_name("acq-ax_T1w")
    'acq_ax_T1w'
    >>> safe_name("ses-pre.1")
    'ses_pre_1'
    """
    return "".join(c if c.isalnum() else "_" for c in label)
