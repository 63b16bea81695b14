"""One list of references (synthsr_nipype/citations.py): the README, the derivatives'
dataset_description.json and logs/CITATION.md all cite from it."""

from __future__ import annotations

import json

from synthsr_nipype.citations import CITATIONS, SYNTHSR_KEYS
from tests.paths import REPO


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_readme_cites_the_list():
    readme = _flat((REPO / "README.md").read_text())
    for key in (*SYNTHSR_KEYS, "hyperfine"):
        assert _flat(CITATIONS[key]) in readme, key


def test_dataset_description_acknowledges_the_list(tmp_path):
    from synthsr_nipype.bids.derivatives import dataset_description

    (tmp_path / "dataset_description.json").write_text(json.dumps({"Name": "x", "BIDSVersion": "1.9.0"}))
    text = dataset_description(tmp_path)["HowToAcknowledge"]
    for key in (*SYNTHSR_KEYS, "hyperfine"):
        assert CITATIONS[key] in text, key


def test_methods_text_cites_the_hyperfine_paper_only_for_its_models():
    from synthsr_nipype.workflows import citation_markdown
    from synthsr_nipype.workflows.synthsr import init_synthsr_wf

    for model, cited in (("v2", False), ("lowfield", True), ("hyperfine", True)):
        text = citation_markdown(init_synthsr_wf(model=model, name=f"wf_{model}"))
        assert CITATIONS["synthsr1"] in text and (CITATIONS["hyperfine"] in text) == cited, model
