"""Helpers for connecting nodes (as niworkflows' ``utils/connections.py``): node names built from
BIDS labels and the functions that run on a connection.

A connection function travels as its source and runs where its destination node runs, so it
imports nothing and refers to no name of this module (its annotations are builtins: they are
evaluated where it runs).
"""

from __future__ import annotations


def safe_name(label: str) -> str:
    """``label`` as a part of a Nipype node name: every character that is not a letter or a digit
    becomes ``_`` (Nipype refuses dots and dashes in names).

    >>> safe_name("acq-ax_T1w")
    'acq_ax_T1w'
    >>> safe_name("ses-pre.1")
    'ses_pre_1'
    """
    return "".join(c if c.isalnum() else "_" for c in label)


def pick(items: object, index: int) -> object:
    """``items[index]``; a one-item output list reaches here as the item itself (Nipype's
    OutputMultiObject unwraps it). A connection function: Nipype runs it from its source.

    >>> pick(["a.txt", "b.txt"], 1)
    'b.txt'
    >>> pick("only.txt", 0)
    'only.txt'
    """
    if isinstance(items, (str, bytes)) or not hasattr(items, "__getitem__"):
        return items
    return items[index]  # type: ignore[index]
