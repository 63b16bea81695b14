"""Imported by MultiProc's forkserver before it forks the workers: their Nipype console level.

The forkserver imports Nipype (through the interfaces) before ``synthsr-bids`` has configured it,
so its workers would log every node at INFO on stdout; ``synthsr-bids`` passes its level in
``$SYNTHSR_BIDS_NIPYPE_LEVEL`` (WARNING without ``-v``).
"""

from __future__ import annotations

import logging
import os

from nipype import logging as nipype_logging  # noqa: F401 - creates Nipype's loggers first

LEVEL = os.environ.get("SYNTHSR_BIDS_NIPYPE_LEVEL", "WARNING")
for name in ("nipype.workflow", "nipype.interface", "nipype.utils"):
    logging.getLogger(name).setLevel(LEVEL)
