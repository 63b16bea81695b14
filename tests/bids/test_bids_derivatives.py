"""Derivative names (pybids round-trip), BIDS URIs, sidecars, dataset_description."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from bids import BIDSLayout
from bids.layout.writing import build_path

from synthsr_nipype import CODE_URL, __version__
from synthsr_nipype.atomic import atomic_write_json
from synthsr_nipype.bids import (
    bids_uri,
    build_derivative_relpath,
    fused_output_entities,
    scan_output_entities,
    write_dataset_description,
)
from synthsr_nipype.bids.derivatives import pybids_derivative_patterns, write_bidsignore
from synthsr_nipype.bids.sidecars import derivative_sidecar, grid_description, synthsr_metadata


@pytest.mark.parametrize(
    "source,suffix,expected,pybids_knows",
    [
        ({"subject": "01", "session": "1", "acquisition": "ax"}, "FLAIR",
         "sub-01/ses-1/anat/sub-01_ses-1_acq-ax_desc-synthsrFLAIR_T1w.nii.gz", True),
        ({"subject": "01"}, "T2w", "sub-01/anat/sub-01_desc-synthsrT2w_T1w.nii.gz", True),
        ({"subject": "01", "reconstruction": "norm", "ceagent": "gad"}, "T1w",
         "sub-01/anat/sub-01_ce-gad_rec-norm_desc-synthsrT1w_T1w.nii.gz", True),
        ({"subject": "02", "task": "nodding", "acquisition": "t2tse", "run": "3"}, "T2w",
         "sub-02/anat/sub-02_task-nodding_acq-t2tse_run-3_desc-synthsrT2w_T1w.nii.gz", False),
    ],
)
def test_scan_output_names(source, suffix, expected, pybids_knows):
    ents = scan_output_entities(source, suffix)
    assert build_derivative_relpath(ents) == expected
    assert build_derivative_relpath(ents, extension=".json") == expected.replace(".nii.gz", ".json")
    by_pybids = build_path({**ents, "extension": ".nii.gz"}, pybids_derivative_patterns(), strict=True)
    assert (by_pybids == expected) if pybids_knows else (by_pybids is None)


def test_fused_names():
    assert build_derivative_relpath(fused_output_entities("01", None)) == (
        "sub-01/anat/sub-01_desc-synthsr_T1w.nii.gz")
    assert build_derivative_relpath(fused_output_entities("01", "pre")) == (
        "sub-01/ses-pre/anat/sub-01_ses-pre_desc-synthsr_T1w.nii.gz")


def _group(*sources: tuple[dict, str], reference: int):
    from synthsr_nipype.bids.plan import GroupPlan, Job

    jobs = []
    for source, suffix in sources:
        ents = scan_output_entities({"subject": "01", **source}, suffix)
        jobs.append(Job(name=suffix, inputs=[], sources=[], suffixes=[suffix], model="v2", entities=ents,
                        out_relpath=build_derivative_relpath(ents)))
    return GroupPlan("01", None, jobs, reference_job=reference)


def test_transform_names_follow_the_reference():
    """``to-`` names the reference scan's space (never a hard-coded T1w); no transform for the reference
    or a single scan; same-suffix twins add the reference's distinguishing entities."""
    group = _group(({}, "T2w"), ({}, "FLAIR"), reference=1)
    assert group.registered_jobs == [0]
    assert group.xfm_relpath(0) == "sub-01/anat/sub-01_from-synthsrT2w_to-synthsrFLAIR_mode-image_xfm.txt"
    assert _group(({}, "T2w"), reference=0).registered_jobs == []
    twins = _group(({"acquisition": "ax"}, "T1w"), ({"acquisition": "cor"}, "T1w"),
                   ({"acquisition": "cor"}, "T2w"), reference=1)
    assert twins.registered_jobs == [0, 2]
    assert twins.xfm_relpath(0) == (
        "sub-01/anat/sub-01_acq-ax_from-synthsrT1w_to-synthsrT1wacqcor_mode-image_xfm.txt")
    assert twins.xfm_relpath(2) == (
        "sub-01/anat/sub-01_acq-cor_from-synthsrT2w_to-synthsrT1wacqcor_mode-image_xfm.txt")
    from bids.layout import parse_file_entities

    parsed = parse_file_entities(twins.xfm_relpath(0), config=["bids", "derivatives"])
    assert (parsed["from"], parsed["to"], parsed["acquisition"]) == ("synthsrT1w", "synthsrT1wacqcor", "ax")


def test_written_names_reindex_with_pybids(tmp_path):
    write_dataset_description(tmp_path, tmp_path)  # any folder works as "raw" here
    sources = [
        ({"subject": "01", "session": "1", "acquisition": "ax"}, "FLAIR"),
        ({"subject": "02", "task": "rest", "run": "1"}, "T2w"),
    ]
    intended = [scan_output_entities(s, x) for s, x in sources]
    intended.append(fused_output_entities("01", "1"))
    for ents in intended:
        (tmp_path / build_derivative_relpath(ents)).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / build_derivative_relpath(ents)).write_bytes(b"")
    layout = BIDSLayout(str(tmp_path), config=["bids", "derivatives"], validate=False)
    for ents in intended:
        rel = build_derivative_relpath(ents)
        got = layout.get_file(str(tmp_path / rel)).get_entities()
        assert {k: str(v) for k, v in got.items()} == {**ents, "extension": ".nii.gz"}


def test_bids_uris():
    assert bids_uri("sub-01/anat/x.nii.gz", "raw") == "bids:raw:sub-01/anat/x.nii.gz"
    assert bids_uri(Path("sub-01/anat/x.nii.gz")) == "bids::sub-01/anat/x.nii.gz"


def test_dataset_description(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "dataset_description.json").write_text(
        json.dumps({"Name": "Study", "BIDSVersion": "1.8.0", "License": "CC0",
                    "DatasetDOI": "doi:10.1/x"}))
    out = tmp_path / "out"
    path = write_dataset_description(out, raw)
    desc = json.loads(path.read_text())
    assert desc["DatasetType"] == "derivative"
    assert desc["GeneratedBy"] == [{"Name": "synthsr-nipype", "Version": __version__,
                                    "CodeURL": CODE_URL}]
    assert desc["SourceDatasets"] == [{"URL": raw.resolve().as_uri(), "DOI": "doi:10.1/x",
                                       "Name": "Study"}]
    assert desc["License"] == "CC0" and desc["DatasetLinks"]["raw"] == raw.resolve().as_uri()
    mtime = path.stat().st_mtime_ns
    write_dataset_description(out, raw)  # identical: left alone
    assert path.stat().st_mtime_ns == mtime


@pytest.mark.parametrize(("environment", "container"), [
    ({}, None),
    ({"SYNTHSR_CONTAINER_TYPE": "docker", "SYNTHSR_CONTAINER_TAG": "synthsr-nipype:0.1.0"},
     {"Type": "docker", "Tag": "synthsr-nipype:0.1.0"}),
    # an Apptainer image converted from the Docker one inherits its variables; Apptainer's own win
    ({"SYNTHSR_CONTAINER_TAG": "synthsr-nipype:0.1.0", "APPTAINER_CONTAINER": "/images/synthsr_0.1.0.sif"},
     {"Type": "apptainer", "Tag": "synthsr_0.1.0.sif"}),
    ({"SINGULARITY_CONTAINER": "/images/old.simg"}, {"Type": "singularity", "Tag": "old.simg"}),
])
def test_dataset_description_names_the_container(tmp_path, monkeypatch, environment, container):
    for variable in ("SYNTHSR_CONTAINER_TYPE", "SYNTHSR_CONTAINER_TAG", "APPTAINER_CONTAINER",
                     "SINGULARITY_CONTAINER"):
        monkeypatch.delenv(variable, raising=False)
    for variable, value in environment.items():
        monkeypatch.setenv(variable, value)
    (generated,) = json.loads(write_dataset_description(tmp_path, tmp_path).read_text())["GeneratedBy"]
    assert generated.get("Container") == container


def test_dataset_description_concurrent_writers(tmp_path):
    out = tmp_path / "out"
    errors = []

    def writer():
        try:
            for _ in range(20):
                write_dataset_description(out, tmp_path)
                json.loads((out / "dataset_description.json").read_text())
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert [p.name for p in out.iterdir()] == ["dataset_description.json"]  # no temp leftovers


def test_atomic_json_and_bidsignore(tmp_path):
    atomic_write_json(tmp_path / "a" / "x.json", {"b": 1, "a": [1, 2]})
    assert json.loads((tmp_path / "a" / "x.json").read_text()) == {"a": [1, 2], "b": 1}
    write_bidsignore(tmp_path, ["logs/"])
    write_bidsignore(tmp_path, ["logs/", "figures/"])
    assert (tmp_path / ".bidsignore").read_text() == "logs/\nfigures/\n"


def test_sidecar_content():
    img = nib.Nifti1Image(np.zeros((5, 6, 7), np.uint8), np.diag([-1.0, 1.0, 1.0, 1.0]))
    meta = synthsr_metadata(model_name="v2", model_sha256="ab" * 32, channels=["x.nii.gz"],
                            ct=False, flip=True, sharpen=False)
    side = derivative_sidecar(meta, sources=["bids:raw:sub-01/anat/x.nii.gz"], img=img)
    assert side["Sources"] == ["bids:raw:sub-01/anat/x.nii.gz"]
    assert side["SkullStripped"] is False
    assert side["Model"] == {"Name": "v2", "SHA256": "ab" * 32}
    assert side["Flags"] == {"ct": False, "flip": True, "sharpen": False}
    assert side["SoftwareVersion"] == __version__
    assert side["Grid"] == grid_description(img)
    assert side["Grid"]["Shape"] == [5, 6, 7] and side["Grid"]["Orientation"] == "LAS"
    assert side["Grid"]["Description"] == "1 mm isotropic grid"
