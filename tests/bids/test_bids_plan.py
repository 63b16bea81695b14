"""Grouping, reference choice, multi-channel model cards and the printed plan."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from synthsr_nipype.bids import (
    ScanInfo,
    choose_reference,
    estimate_mem_gb,
    format_plan,
    group_scans,
)
from synthsr_nipype.bids.plan import Plan, padded_1mm_shape, plan_group
from synthsr_nipype.inference.memory import estimate_memory_gb
from synthsr_nipype.model.card import save_card_model
from synthsr_nipype.model.registry import channel_suffixes, model_label
from synthsr_nipype.model.spec import published_spec
from synthsr_nipype.train.unet import TrainableUNet, export_state_dict


def scan(name: str, zooms=(1.0, 1.0, 1.0), usable=True, shape=(100, 120, 90), **ents) -> ScanInfo:
    """A described scan without a file: name like 'sub-01_ses-1_acq-ax_T2w'."""
    parts = name.split("_")
    entities = {}
    keys = {"sub": "subject", "ses": "session", "acq": "acquisition", "run": "run",
            "task": "task", "rec": "reconstruction"}
    for part in parts[:-1]:
        key, _, value = part.partition("-")
        entities[keys[key]] = value
    entities.update(ents)
    sub = entities["subject"]
    ses = entities.get("session")
    rel = f"sub-{sub}/" + (f"ses-{ses}/" if ses else "") + f"anat/{name}.nii.gz"
    return ScanInfo(
        path=f"/data/{rel}", relpath=rel, entities=entities, suffix=parts[-1],
        shape=list(shape), zooms=list(zooms), orientation="RAS",
        fov_mm=[s * z for s, z in zip(shape, zooms)],
        voxel_volume=math.prod(zooms) if usable else math.inf,
        usable=usable, reason="" if usable else "empty file (0 bytes)",
    )


def test_groups_by_subject_and_session():
    groups = group_scans([
        scan("sub-02_ses-b_T1w"), scan("sub-01_T2w"), scan("sub-02_ses-a_T1w"),
        scan("sub-01_T1w"), scan("sub-02_ses-a_FLAIR", usable=False),
    ])
    assert [(g.subject, g.session) for g in groups] == [("01", None), ("02", "a"), ("02", "b")]
    assert [s.name for s in groups[0].scans] == ["sub-01_T1w.nii.gz", "sub-01_T2w.nii.gz"]
    assert [s.name for s in groups[1].skipped] == ["sub-02_ses-a_FLAIR.nii.gz"]
    assert groups[1].label == "sub-02_ses-a"


def test_reference_smallest_voxel_volume():
    scans = [scan("sub-01_T1w", (1, 1, 5)), scan("sub-01_FLAIR", (1, 1, 3)),
             scan("sub-01_T2w", (0.5, 0.5, 6))]
    ref, why = choose_reference(scans)
    assert ref.suffix == "T2w" and why == "smallest voxel volume"  # 1.5 < 3 < 5 mm3


@pytest.mark.parametrize(
    "names,expected",
    [
        (["sub-01_FLAIR", "sub-01_T2w", "sub-01_T1w"], "sub-01_T1w"),
        (["sub-01_FLAIR", "sub-01_T2w"], "sub-01_T2w"),
        (["sub-01_PDw", "sub-01_FLAIR"], "sub-01_FLAIR"),
        (["sub-01_acq-b_T1w", "sub-01_acq-a_T1w"], "sub-01_acq-a_T1w"),
        (["sub-01_T2starw", "sub-01_PDw"], "sub-01_PDw"),
    ],
)
def test_reference_ties(names, expected):
    ref, _ = choose_reference([scan(n, (1, 1, 4)) for n in names])
    assert ref.name == f"{expected}.nii.gz"


def test_reference_ties_survive_float_noise():
    scans = [scan("sub-01_FLAIR", (0.7187504, 0.7187503, 4.0)),
             scan("sub-01_T1w", (0.71875, 0.71875, 4.0000001))]
    assert choose_reference(scans)[0].suffix == "T1w"


def test_reference_filter_overrides():
    scans = [scan("sub-01_T1w", (1, 1, 1)), scan("sub-01_acq-ax_T2w", (1, 1, 5))]
    ref, why = choose_reference(scans, {"suffix": "T2w", "acquisition": "ax"})
    assert ref.suffix == "T2w" and why.startswith("reference filter")
    ref, why = choose_reference(scans, {"suffix": "FLAIR"})
    assert ref.suffix == "T1w" and "matched nothing" in why


def test_reference_filter_from_filter_file(tmp_path):
    from synthsr_nipype.bids.query import load_bids_filters

    path = tmp_path / "filters.json"
    path.write_text('{"reference": {"acquisition": "*"}, "t1w": {"acquisition": null}}')
    filters = load_bids_filters(path)
    scans = [scan("sub-01_T1w", (1, 1, 1)), scan("sub-01_acq-ax_T2w", (1, 1, 5))]
    assert choose_reference(scans, filters["reference"])[0].suffix == "T2w"
    assert choose_reference(scans, {"acquisition": filters["t1w"]["acquisition"]})[0].suffix == "T1w"


def test_plan_group_jobs_names_and_reference():
    group = group_scans([scan("sub-01_ses-1_acq-ax_FLAIR", (1, 1, 4)),
                         scan("sub-01_ses-1_T1w", (1, 1, 3)),
                         scan("sub-01_ses-1_T2w", usable=False)])[0]
    gplan = plan_group(group, model="v2")
    outs = [j.out_relpath for j in gplan.jobs]
    assert outs == ["sub-01/ses-1/anat/sub-01_ses-1_desc-synthsrT1w_T1w.nii.gz",  # name order
                    "sub-01/ses-1/anat/sub-01_ses-1_acq-ax_desc-synthsrFLAIR_T1w.nii.gz"]
    assert gplan.reference.endswith("sub-01_ses-1_T1w.nii.gz") and gplan.reference_job == 0
    assert gplan.fused_relpath == "sub-01/ses-1/anat/sub-01_ses-1_desc-synthsr_T1w.nii.gz"
    assert gplan.skipped == [("sub-01/ses-1/anat/sub-01_ses-1_T2w.nii.gz", "empty file (0 bytes)")]
    assert len({j.name for j in gplan.jobs}) == 2
    assert all(j.name.isidentifier() for j in gplan.jobs)


def test_plan_multichannel_model_card():
    assert channel_suffixes("hyperfine") == ("T1w", "T2w")
    assert channel_suffixes("v2") is None and channel_suffixes("x.h5", 1) is None
    assert channel_suffixes("/m/custom.h5", 2) == ("T1w", "T2w")
    group = group_scans([scan("sub-01_T1w", (1, 1, 5)), scan("sub-01_T2w", (1, 1, 5)),
                         scan("sub-01_FLAIR", (1, 1, 5)), scan("sub-01_acq-b_T1w", (1, 1, 6))])[0]
    gplan = plan_group(group, model="hyperfine", general_model="v2")
    assert [(j.model, j.suffixes) for j in gplan.jobs] == [
        ("hyperfine", ["T1w", "T2w"]), ("v2", ["FLAIR"]), ("v2", ["T1w"])]
    assert gplan.jobs[0].out_relpath == "sub-01/anat/sub-01_desc-synthsrT1wT2w_T1w.nii.gz"
    assert gplan.jobs[2].sources == ["sub-01/anat/sub-01_acq-b_T1w.nii.gz"]
    assert gplan.reference_job == 0  # the T1w reference went into the Hyperfine job
    lacking = group_scans([scan("sub-02_T1w"), scan("sub-02_FLAIR")])[0]
    gplan = plan_group(lacking, model="hyperfine", general_model="v2")
    assert [j.model for j in gplan.jobs] == ["v2", "v2"]
    assert "lacks T2w" in gplan.notes[0]


def test_plan_follows_the_card_of_a_trained_model(tmp_path):
    spec = published_spec(4, in_channels=2, n_levels=3)
    card = {"channels": [{"suffix": "T2w"}, {"suffix": "FLAIR"}], "normalisation": "minmax",
            "output": "synthsr-general"}
    model = str(save_card_model(tmp_path / "t2_flair.safetensors", spec, export_state_dict(TrainableUNet(spec)),
                                card))
    assert channel_suffixes(model) == ("T2w", "FLAIR")
    group = group_scans([scan("sub-01_T1w", (1, 1, 5)), scan("sub-01_T2w", (1, 1, 5)),
                         scan("sub-01_FLAIR", (1, 5, 1)), scan("sub-01_acq-b_T2w", (1, 1, 6))])[0]
    gplan = plan_group(group, model=model, general_model="v2")
    assert [(j.model, j.suffixes) for j in gplan.jobs] == [
        (model, ["T2w", "FLAIR"]), ("v2", ["T1w"]), ("v2", ["T2w"])]
    lacking = group_scans([scan("sub-02_T1w"), scan("sub-02_T2w")])[0]
    gplan = plan_group(lacking, model=model, general_model="v2")
    assert [j.model for j in gplan.jobs] == ["v2", "v2"] and "lacks FLAIR" in gplan.notes[0]


def test_duplicate_entities_are_skipped():
    a = scan("sub-01_T1w")
    b = scan("sub-01_T1w")
    b.path = b.path.replace(".nii.gz", ".nii")
    b.relpath = b.relpath.replace(".nii.gz", ".nii")
    gplan = plan_group(group_scans([a, b])[0])
    assert len(gplan.jobs) == 1 and "same entities" in gplan.skipped[0][1]


def test_extended_names_keep_task_and_run():
    gplan = plan_group(group_scans([scan("sub-01_task-rest_acq-x_run-2_T1w")])[0])
    assert gplan.jobs[0].out_relpath == (
        "sub-01/anat/sub-01_task-rest_acq-x_run-2_desc-synthsrT1w_T1w.nii.gz")


def test_padded_shape_and_memory():
    s = scan("sub-01_T1w", (0.72, 0.72, 3.0), shape=(320, 320, 39))
    assert padded_1mm_shape(s) == [256, 256, 128]
    # the scheduler's figure is the inference cost model's, which benchmarks/run.py checks against ru_maxrss
    spec = published_spec(24)
    assert estimate_mem_gb([192, 256, 160], 24) == pytest.approx(estimate_memory_gb((192, 256, 160), spec), abs=0.01)
    assert 1.0 < estimate_mem_gb([192, 256, 160], 24) < 2.84  # issue 7's bound for the whole FLAIR
    assert estimate_mem_gb([64, 64, 64], 2) < estimate_mem_gb([64, 64, 64], 24)
    from synthsr_nipype.bids.plan import estimate_n_procs

    # thread advice: more for more work, never below 1
    assert 1 <= estimate_n_procs([64, 64, 64], 2) <= estimate_n_procs([64, 64, 64], 24)
    assert estimate_n_procs([64, 64, 64], 24) < estimate_n_procs([192, 256, 160], 24)


def test_format_plan_lists_runs_fusion_and_skips():
    plan = Plan(bids_dir="/data", model="v2", general_model="v2")
    plan.groups = [
        plan_group(group_scans([scan("sub-01_T1w", (1, 1, 3)), scan("sub-01_T2w", (1, 1, 4))])[0]),
        plan_group(group_scans([scan("sub-02_T1w", usable=False)])[0]),
    ]
    text = format_plan(plan)
    assert "2 group(s); 2 SynthSR run(s); 1 fused output(s); 1 scan(s) skipped" in text
    assert "sub-01: 2 run(s), reference sub-01_T1w.nii.gz (smallest voxel volume)" in text
    assert "voxel-wise median of 2 -> sub-01/anat/sub-01_desc-synthsr_T1w.nii.gz" in text
    # the one transform: the T2w onto the reference T1w (none for the reference itself)
    assert text.count("  xfm  ") == 1
    assert ("xfm  sub-01_desc-synthsrT2w_T1w.nii.gz -> "
            "sub-01/anat/sub-01_from-synthsrT2w_to-synthsrT1w_mode-image_xfm.txt") in text
    assert "skip sub-02_T1w.nii.gz: empty file (0 bytes)" in text
    assert "nothing to run: no usable scan in this group" in text
    assert model_label("/x/y/tiny.h5") == "tiny.h5" and model_label("v2") == "v2"
    assert Path(plan.to_dict()["groups"][0]["jobs"][0]["inputs"][0]).name == "sub-01_T1w.nii.gz"
