"""The shipped SynthSeg tables and what the port derives from them (fixture README 1.1)."""

from __future__ import annotations

import numpy as np

from synthsr_nipype.segmentation.tables import flip_indices, load_tables, volume_names

# FreeSurfer's left/right twins among SynthSeg's labels
TWINS = {2: 41, 3: 42, 4: 43, 5: 44, 7: 46, 8: 47, 10: 49, 11: 50, 12: 51, 13: 52, 17: 53, 18: 54, 26: 58, 28: 60}


def test_flip_swaps_every_left_label_with_its_right_twin():
    t = load_tables()
    assert len(t.labels) == 33 and t.labels[0] == 0
    swapped = dict(zip(t.labels.tolist(), t.labels[t.flip_indices].tolist()))
    for left, right in TWINS.items():
        assert swapped[left] == right and swapped[right] == left
    for neutral in (0, 14, 15, 16, 24):
        assert swapped[neutral] == neutral
    assert np.array_equal(t.flip_indices[t.flip_indices], np.arange(33))


def test_v1_tables_and_columns():
    t2, t1 = load_tables(), load_tables(v1=True)
    assert len(t1.labels) == 32 and 24 not in t1.labels.tolist()
    assert t2.n_qc_classes == 9 and len(t2.qc_names) == 8 and t2.n_groups == 5
    assert len(t2.parc_labels) == 69 and 1004 not in t2.parc_labels.tolist()
    names = volume_names(t2, parc=True)
    assert names[0] == "total intracranial" and len(names) == 1 + 32 + 68
    assert volume_names(t1, parc=False)[0] != "total intracranial" and len(volume_names(t1, parc=False)) == 31


def test_flip_indices_pair_by_position():
    raw = np.array([0, 9, 1, 2, 11, 12])  # 2 neutral, left (1, 2), right (11, 12)
    labels = np.unique(raw).tolist()
    pairs = dict(zip(labels, np.array(labels)[flip_indices(raw, 2)].tolist()))
    assert pairs == {0: 0, 1: 11, 2: 12, 9: 9, 11: 1, 12: 2}
