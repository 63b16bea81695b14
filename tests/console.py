"""What ``synthsr-bids`` prints on stderr besides its messages: one progress line per finished node."""
from __future__ import annotations

import re

#: ``[3/12] sub-01 synthsr_FLAIR synthsr done (41 s)`` (workflows.execution.progress_callback)
PROGRESS = re.compile(r"^\[\d+/\d+\] .+ (done|FAILED) \(\d+ s\)$")


def messages(text: str | list[str]) -> list[str]:
    """The non-empty lines of ``text`` that are not progress lines."""
    lines = text.splitlines() if isinstance(text, str) else text
    return [ln for ln in lines if ln.strip() and not PROGRESS.match(ln)]
