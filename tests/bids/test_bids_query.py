"""Labels, filter files and pybids queries."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from synthsr_nipype.bids import BIDSInputError, build_layout, collect_anat, normalize_label
from synthsr_nipype.bids.labels import normalize_labels
from synthsr_nipype.bids.query import load_bids_filters, parse_bids_filters, suffix_queries
from tests.paths import EXAMPLES

needs_examples = pytest.mark.skipif(not EXAMPLES.is_dir(), reason="../shared not available")


@pytest.mark.parametrize("text,expected", [("01", "01"), ("sub-01", "01"), (" sub-A1 ", "A1")])
def test_labels_with_or_without_prefix(text, expected):
    assert normalize_label(text, "sub") == expected


@pytest.mark.parametrize("text", ["../x", "sub-../x", "a_b", "a-b", "", "sub-", "01/02", "ses-1"])
def test_non_bids_labels_are_refused(text):
    with pytest.raises(BIDSInputError, match="invalid sub label"):
        normalize_label(text, "sub")


def test_normalize_labels_dedupes_and_keeps_none():
    assert normalize_labels(["sub-01", "01", "02"], "sub") == ["01", "02"]
    assert normalize_labels(None, "ses") is None


def test_filter_file_null_and_star(tmp_path):
    from bids.layout import Query

    path = tmp_path / "f.json"
    path.write_text(json.dumps({"T1w": {"acquisition": None, "run": "*"}, "flair": {"rec": "x"}}))
    filters = load_bids_filters(path)
    assert filters["t1w"] == {"acquisition": Query.NONE, "run": Query.ANY}
    queries = suffix_queries(["T1w", "FLAIR"], filters)
    assert queries["T1w"]["acquisition"] is Query.NONE
    assert queries["FLAIR"]["rec"] == "x" and queries["FLAIR"]["datatype"] == "anat"


@pytest.mark.parametrize(
    "content,match",
    [("[1]", "JSON object"), ('{"t1w": 3}', "object of entities"), ("{", "not a readable JSON"),
     ('{"t1w": {"subject": "01"}}', "participant-label")],
)
def test_bad_filter_files(tmp_path, content, match):
    path = tmp_path / "f.json"
    path.write_text(content)
    with pytest.raises(BIDSInputError, match=match):
        load_bids_filters(path)


def test_filter_key_matching_no_suffix():
    with pytest.raises(BIDSInputError, match="match no selected suffix"):
        suffix_queries(["T1w"], parse_bids_filters({"bold": {}}))


def test_missing_filter_file(tmp_path):
    with pytest.raises(BIDSInputError, match="not found"):
        load_bids_filters(tmp_path / "nope.json")


def test_not_a_bids_dataset(tmp_path):
    with pytest.raises(BIDSInputError, match="not a BIDS dataset"):
        build_layout(tmp_path)


@needs_examples
def test_collect_anat_selection_and_errors():
    layout = build_layout(EXAMPLES / "ds114")
    files = collect_anat(layout, participant_labels=["02"], session_labels=["test"])
    assert [Path(f.path).name for f in files] == ["sub-02_ses-test_T1w.nii.gz"]
    with pytest.raises(BIDSInputError, match="participant label.*99.*not found"):
        collect_anat(layout, participant_labels=["99"])
    with pytest.raises(BIDSInputError, match="session label.*nope.*not found"):
        collect_anat(layout, session_labels=["nope"])


@needs_examples
def test_collect_anat_filters_and_suffixes():
    layout = build_layout(EXAMPLES / "ds004332")
    t2 = collect_anat(layout, suffixes=["T2w"], bids_filters={"t2w": {"reconstruction": "wre"}})
    assert t2 and all("_rec-wre_" in f.path and f.path.endswith("_T2w.nii") for f in t2)
    anat = collect_anat(layout, bids_filters={"anat": {"task": "still"}})
    assert anat and all("task-still" in f.path for f in anat)
    assert not any(f.path.endswith(".json") for f in anat)


@needs_examples
def test_persistent_database(tmp_path):
    db = tmp_path / "db"
    first = collect_anat(build_layout(EXAMPLES / "ds001", database_dir=db))
    assert any(db.iterdir())
    second = collect_anat(build_layout(EXAMPLES / "ds001", database_dir=db))
    assert [f.path for f in first] == [f.path for f in second]
