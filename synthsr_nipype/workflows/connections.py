"""Functions that run on a connection between nodes (as niworkflows' ``utils/connections.py``).
Node names built from BIDS labels use :func:`synthsr_nipype.bids.labels.safe_name`.

A connection function travels as its source and runs where its destination node runs, so it
imports nothing and refers to no name of this module (its annotations are builtins: they are
evaluated where it runs).
"""

from __future__ import annotations


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
