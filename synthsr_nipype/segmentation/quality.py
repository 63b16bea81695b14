"""SynthSeg's automated QC scores (``--qc``) and the rule that flags them: the one home of the threshold.

The QC network predicts, for each of eight structure groups (general white matter, grey matter, CSF,
cerebellum, brainstem, thalamus, putamen+pallidum, hippocampus+amygdala), a score in [0, 1] that stands for the
Dice overlap the segmentation of that group would have with a manual one.  SynthSeg's authors detect failed
segmentations with a threshold of 0.65 on these scores (Billot et al., "Robust machine learning segmentation for
large-scale analysis of heterogeneous clinical brain MRI datasets", PNAS 2023; docs/segmentation.md, "QC
scores").  A flag means "look at this segmentation", not "discard it": with random weights (the test fixtures)
or on a scan far from the training domain, many groups score below it.

Torch-free: the reports and the group level import it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

#: a QC score below this flags its structure group (Billot et al., PNAS 2023)
QC_THRESHOLD = 0.65


def flagged_groups(scores: Mapping[str, float | None] | None, threshold: float = QC_THRESHOLD) -> list[str]:
    """The structure groups whose score is below ``threshold``, in the scores' order.

    >>> flagged_groups({"general white matter": 0.91, "cerebellum": 0.52, "brainstem": 0.65})
    ['cerebellum']
    """
    out = []
    for name, value in (scores or {}).items():
        if value is None:
            continue
        value = float(value)
        if not math.isnan(value) and value < threshold:
            out.append(str(name))
    return out


def qc_flags(scores: Mapping[str, float | None] | None, threshold: float = QC_THRESHOLD) -> list[str]:
    """One line per flagged group, as the reports and tables show it.

    >>> qc_flags({"general white matter": 0.91, "cerebellum": 0.5234})
    ['SynthSeg QC cerebellum 0.5234 < 0.65']
    """
    return [f"SynthSeg QC {name} {round(float(scores[name]), 4):g} < {threshold:g}"
            for name in flagged_groups(scores, threshold)]
