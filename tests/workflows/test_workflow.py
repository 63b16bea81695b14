"""Interfaces and workflows on small images with the tiny fixture models, and the CLI's
error paths (exit codes, one line, crash files)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tests.console import messages
from tests.paths import MODELS, SHARED, TINY

TINY_HF = MODELS / "hyperfine_tiny_weights.h5"
STROKE = SHARED / "data" / "real" / "stroke-t2" / "T2.nii.gz"
HIRES = SHARED / "data" / "real" / "hires-t1" / "T1.nii.gz"

pytestmark = pytest.mark.skipif(not (TINY.is_file() and STROKE.is_file()),
                                reason="../shared not available")


def small_scan(src: Path, *, thickness: int, crop=48) -> nib.Nifti1Image:
    """A small thick-slice scan: a central crop, slices averaged along the third axis."""
    img = nib.load(src)
    data = np.asarray(img.dataobj, dtype=np.float32)
    c = [s // 2 for s in data.shape]
    zooms = np.asarray(img.header.get_zooms()[:3], float)
    n = [int(crop / z) for z in zooms]
    block = data[c[0] - n[0] // 2: c[0] + n[0] // 2, c[1] - n[1] // 2: c[1] + n[1] // 2,
                 c[2] - n[2] // 2: c[2] + n[2] // 2]
    k = max(1, int(round(thickness / zooms[2])))
    block = block[:, :, : block.shape[2] // k * k]
    thick = block.reshape(block.shape[0], block.shape[1], -1, k).mean(axis=3)
    start = img.affine @ np.array([c[0] - n[0] // 2, c[1] - n[1] // 2, c[2] - n[2] // 2, 1])
    affine = img.affine.copy()
    affine[:3, 2] *= k
    affine[:3, 3] = start[:3] + img.affine[:3, 2] * (k - 1) / 2
    out = nib.Nifti1Image((thick / max(thick.max(), 1) * 1000).astype(np.int16), affine)
    out.set_qform(affine, 1)
    out.set_sform(affine, 1)
    return out


def make_dataset(root: Path, scans: dict[str, nib.Nifti1Image | bytes]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset_description.json").write_text('{"Name": "small", "BIDSVersion": "1.9.0"}')
    for rel, img in scans.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(img, bytes):
            path.write_bytes(img)
        else:
            img.to_filename(path)
    return root


@pytest.fixture(scope="module")
def scans():
    return {
        "t2": small_scan(STROKE, thickness=4),
        "t1": small_scan(HIRES, thickness=4),
        "flair": small_scan(STROKE, thickness=3),
        "t1_same_head": small_scan(STROKE, thickness=5),  # Hyperfine needs one head
    }


# --------------------------------------------------------------------------- interfaces
def test_nohash_inputs_do_not_change_the_cache_key():
    from synthsr_nipype.interfaces import SynthSR

    a = SynthSR(in_files=[str(STROKE)], model="v2", device="cpu", num_threads=1, use_gpu=False)
    b = SynthSR(in_files=[str(STROKE)], model="v2", device="cuda", num_threads=8, use_gpu=True)
    c = SynthSR(in_files=[str(STROKE)], model="v2", sharpen=False)
    hash_a = a.inputs.get_hashval("content")[1]
    assert hash_a == b.inputs.get_hashval("content")[1]
    assert hash_a != c.inputs.get_hashval("content")[1]



def test_synthseg_runtime_inputs_do_not_change_the_cache_key():
    from synthsr_nipype.interfaces.synthseg import SynthSeg

    a = SynthSeg(in_file=str(STROKE), device="cpu", num_threads=1)
    b = SynthSeg(in_file=str(STROKE), device="cuda", num_threads=8, use_gpu=True)
    assert a.inputs.get_hashval("content")[1] == b.inputs.get_hashval("content")[1]
    assert a.inputs.get_hashval("content")[1] != SynthSeg(in_file=str(STROKE), parc=True).inputs.get_hashval(
        "content")[1]


def test_synthsr_wf_resources_and_gpu_flag():
    from synthsr_nipype.settings import SynthSROptions
    from synthsr_nipype.workflows import init_synthsr_wf

    options = SynthSROptions(model="lowfield", flip=False, device="cuda", use_gpu=True, output_space="native")
    wf = init_synthsr_wf(options, model="v2", omp_nthreads=3, mem_gb=4.5, name="one_wf")
    node = wf.get_node("synthsr")
    assert node.n_procs == 3 and node.mem_gb == pytest.approx(4.5)
    assert node.is_gpu_node()  # MultiProc's GPU slots apply
    # the model named for the scan wins over the options' one; the options reach the node
    assert (node.inputs.model, node.inputs.flip, node.inputs.device, node.inputs.output_space) == (
        "v2", False, "cuda", "native")
    assert "SynthSR" in wf.__desc__ and "`v2`, sharpening" in wf.__desc__
    assert init_synthsr_wf(options).get_node("synthsr").inputs.model == "lowfield"


def test_synthsr_interface_runs(tmp_path, scans):
    from nipype.pipeline import engine as pe

    from synthsr_nipype.interfaces import SynthSR

    src = tmp_path / "t2.nii.gz"
    scans["t2"].to_filename(src)
    res = pe.Node(SynthSR(in_files=[str(src)], model=str(TINY), device="cpu"), name="s",
                  base_dir=str(tmp_path)).run()
    out = nib.load(res.outputs.out_file)
    assert out.get_data_dtype() == np.uint8
    assert np.allclose(out.header.get_zooms()[:3], 1, atol=1e-3)
    meta = json.loads(Path(res.outputs.out_json).read_text())
    assert meta["Model"]["Name"] == TINY.name and len(meta["Model"]["SHA256"]) == 64
    assert meta["InputChannels"] == ["t2.nii.gz"]
    assert "HeaderWarnings" not in meta
    # the reliability map of the same run (issue 25): the output's grid, in [0, 1], QC in the sidecar
    rel = nib.load(res.outputs.out_reliability)
    assert rel.shape == out.shape and np.allclose(rel.affine, out.affine)
    assert 0 <= rel.get_fdata().min() and rel.get_fdata().max() <= 1
    assert set(meta["ReliabilityQC"]) == {"MeanReliability", "UncoveredFraction", "TTADisagreement"}
    assert isinstance(meta["QCFlags"], list)
    native = pe.Node(SynthSR(in_files=[str(src)], model=str(TINY), device="cpu", output_space="native"),
                     name="n", base_dir=str(tmp_path)).run()
    moved = nib.load(native.outputs.out_native)
    assert moved.shape == scans["t2"].shape and np.allclose(moved.affine, scans["t2"].affine, atol=1e-5)


def test_slice_thickness_from_the_sidecar_lowers_reliability_between_slices(tmp_path, scans):
    """BIDS SliceThickness under the spacing (slice gaps the header cannot show, issue 25): the plan
    reads it from the scan's sidecar, the SynthSR node's map is lower where no slice was excited."""
    from nipype.pipeline import engine as pe

    from synthsr_nipype.bids.scan import describe_scan
    from synthsr_nipype.interfaces import SynthSR

    src = tmp_path / "sub-01_T2w.nii.gz"
    scans["t2"].to_filename(src)
    spacing = nib.affines.voxel_sizes(scans["t2"].affine)
    thin = float(spacing.max()) / 2
    (tmp_path / "sub-01_T2w.json").write_text(json.dumps({"SliceThickness": thin}))
    info = describe_scan(src, entities={"subject": "01"}, relpath=src.name)
    assert info.slice_thickness == thin and info.slice_direction is None

    def mean_reliability(name, **gaps):
        res = pe.Node(SynthSR(in_files=[str(src)], model=str(TINY), device="cpu", **gaps), name=name,
                      base_dir=str(tmp_path)).run()
        meta = json.loads(Path(res.outputs.out_json).read_text())
        return meta["ReliabilityQC"]["MeanReliability"], nib.load(res.outputs.out_reliability).get_fdata()

    contiguous, map_contiguous = mean_reliability("contiguous")
    gapped, map_gapped = mean_reliability("gaps", slice_thickness=[thin], slice_direction=[""])
    print(f"\nmean reliability: contiguous {contiguous:.3f}, SliceThickness {thin:.2f} mm {gapped:.3f}")
    assert gapped < contiguous and np.all(map_gapped <= map_contiguous + 1e-6)


def test_synthsr_interface_qform_sform_disagree(tmp_path, scans):
    """A scan whose qform and sform disagree is processed on the sform's grid (mri_synthsr's
    img.affine); the node's sidecar carries the one note, and the report section says it too."""
    from nipype.pipeline import engine as pe

    from synthsr_nipype.interfaces import SynthSR
    from synthsr_nipype.reports.subject import header_facts

    img = scans["t2"]
    moved = img.affine.copy()
    moved[1, 3] += 12.0
    img = nib.Nifti1Image(np.asanyarray(img.dataobj), img.affine)
    img.set_qform(scans["t2"].affine, code=1)
    img.set_sform(moved, code=1)
    src = tmp_path / "t2_moved.nii.gz"
    img.to_filename(src)
    res = pe.Node(SynthSR(in_files=[str(src)], model=str(TINY), device="cpu"), name="s",
                  base_dir=str(tmp_path)).run()
    out = nib.load(res.outputs.out_file)
    meta = json.loads(Path(res.outputs.out_json).read_text())
    print("sidecar HeaderWarnings:", meta["HeaderWarnings"])
    assert len(meta["HeaderWarnings"]) == 1
    assert meta["HeaderWarnings"][0].startswith("t2_moved.nii.gz: qform and sform disagree by up to 12 mm")
    # the output's first voxel sits where the sform puts the input's corner (half a voxel inside)
    corner_sform = moved[:3, :3] @ [-0.5, -0.5, -0.5] + moved[:3, 3]
    corner_out = out.affine[:3, :3] @ [-0.5, -0.5, -0.5] + out.affine[:3, 3]
    print("output corner vs sform corner (mm):", np.round(corner_out - corner_sform, 3))
    assert np.abs(corner_out - corner_sform).max() < 1.0
    _, notes = header_facts(src)
    assert any("qform and sform disagree by up to 12 mm" in n for n in notes), notes


def test_bids_plan_interface(tmp_path, scans):
    from nipype.pipeline import engine as pe

    from synthsr_nipype.interfaces import BIDSPlan

    root = make_dataset(tmp_path / "bids", {
        "sub-01/anat/sub-01_T2w.nii.gz": scans["t2"],
        "sub-01/anat/sub-01_FLAIR.nii.gz": b"",
    })
    # named like a scan, but a folder: pybids does not index it; the CLI's selection reports it, so must BIDSPlan
    (root / "sub-01" / "anat" / "sub-01_T1w.nii.gz").mkdir()
    res = pe.Node(BIDSPlan(bids_dir=str(root), participant_label=["sub-01"],
                           database_dir=str(tmp_path / "db")), name="plan", base_dir=str(tmp_path / "w")).run()
    (group,) = res.outputs.groups
    assert [j["suffixes"] for j in group["jobs"]] == [["T2w"]]
    skipped = {tuple(s)[0]: tuple(s)[1] for s in group["skipped"]}
    print(skipped)
    assert skipped.pop("sub-01/anat/sub-01_FLAIR.nii.gz") == "empty file (0 bytes)"
    assert list(skipped) == ["sub-01/anat/sub-01_T1w.nii.gz"]
    assert "skip sub-01_FLAIR.nii.gz" in Path(res.outputs.plan_txt).read_text()
    assert (tmp_path / "db").is_dir()  # the pybids database went where it was asked to


# ---------------------------------------------------------------------------- workflows
def test_single_subject_wf_graph_and_citation(tmp_path, scans):
    from synthsr_nipype.bids import build_layout, build_plan, collect_anat
    from synthsr_nipype.workflows import citation_markdown, init_synthsr_bids_wf

    root = make_dataset(tmp_path / "bids", {
        "sub-01/ses-1/anat/sub-01_ses-1_T2w.nii.gz": scans["t2"],
        "sub-01/ses-1/anat/sub-01_ses-1_FLAIR.nii.gz": scans["flair"],
        "sub-02/anat/sub-02_T1w.nii.gz": scans["t1"],
    })
    plan = build_plan(collect_anat(build_layout(root)), bids_dir=root, base_features=2)
    wf = init_synthsr_bids_wf(plan=plan, output_dir=tmp_path / "out", model_sha256={"v2": "x"})
    names = sorted(n.name for n in wf._graph.nodes())
    assert names == ["single_subject_01_1_wf", "single_subject_02_wf"]
    sub1 = wf.get_node("single_subject_01_1_wf")
    assert {n for n in sub1.list_node_names() if n.endswith("synthsr")} == {
        "synthsr_FLAIR_wf.synthsr", "synthsr_T2w_wf.synthsr"}
    assert sub1.get_node("fusion").inputs.reference_index == plan.groups[0].reference_job
    # each SynthSR node: mem_gb and n_procs from the cost model, n_procs capped by --omp-nthreads
    big = init_synthsr_bids_wf(plan=plan, output_dir=tmp_path / "out",
                               omp_nthreads=64, name="big_wf")
    for group in plan.groups:
        sub = big.get_node(f"single_subject_{group.subject}" + (f"_{group.session}" if group.session else "")
                           + "_wf")
        for job in group.jobs:
            node = sub.get_node(f"synthsr_{job.name}_wf.synthsr")
            assert node.mem_gb == pytest.approx(job.mem_gb)
            assert node.n_procs == node.inputs.num_threads == min(64, job.n_procs) < 64
            assert wf.get_node(sub.name).get_node(f"synthsr_{job.name}_wf.synthsr").n_procs == 1
    text = citation_markdown(wf)
    assert text.count("SynthSR [@synthsr1") == 1  # identical descriptions appear once
    assert "voxel-wise median" in text and "[pybids]" in text
    # transforms: the non-reference scan of sub-01/ses-1 only (none for the reference, none for sub-02)
    (registered,) = plan.groups[0].registered_jobs
    ref_suffix = plan.groups[0].jobs[plan.groups[0].reference_job].suffixes[0]
    sinks = [n for n in sub1.list_node_names() if n.startswith("ds_anat_wf.ds_xfm")]
    assert sinks == [f"ds_anat_wf.ds_xfm_{plan.groups[0].jobs[registered].name}"]
    entities = sub1.get_node(sinks[0]).inputs.entities
    assert (entities["from"], entities["to"]) == (plan.groups[0].jobs[registered].entities["desc"],
                                                  f"synthsr{ref_suffix}")
    assert not [n for n in wf.get_node("single_subject_02_wf").list_node_names() if "xfm" in n]


def test_methods_text_in_data_flow_order(tmp_path, scans):
    """SynthSR's paragraph first, then the registration (onto the words the report's captions use), the
    morphometry, and the software last; the transforms' target named as the registration's."""
    from synthsr_nipype.bids import build_layout, build_plan, collect_anat
    from synthsr_nipype.inference.fusion import REGISTRATION_TARGET
    from synthsr_nipype.settings import MorphometryOptions
    from synthsr_nipype.workflows import citation_markdown, init_synthsr_bids_wf
    from synthsr_nipype.workflows.base import collect_descriptions

    root = make_dataset(tmp_path / "bids", {
        "sub-01/anat/sub-01_T2w.nii.gz": scans["t2"],
        "sub-01/anat/sub-01_FLAIR.nii.gz": scans["flair"],
    })
    plan = build_plan(collect_anat(build_layout(root)), bids_dir=root, base_features=2)
    wf = init_synthsr_bids_wf(plan=plan, output_dir=tmp_path / "out",
                              morphometry=MorphometryOptions(seg_backend="ants", tbm=True))
    texts = collect_descriptions(wf)
    assert texts[0].startswith("Each anatomical scan was converted") and "SynthSR" in texts[0]
    assert f"registered onto {REGISTRATION_TARGET}" in texts[1]
    assert "MNI152NLin2009aSym" in texts[2] and "tensor-based morphometry" in texts[2]
    assert texts[-1].startswith("Results included in this manuscript come from synthsr-nipype")
    assert len(texts) == 4
    assert citation_markdown(wf).index("[@synthsr1") < citation_markdown(wf).index("[@ants]")


def _run_main(args):
    from synthsr_nipype.cli.bids_app import main

    return main([str(a) for a in args])


def test_multichannel_and_general_models_run(tmp_path, scans, capsys, monkeypatch):
    """Hyperfine model takes T1w+T2w, FLAIR goes through the general model; all fused."""
    root = make_dataset(tmp_path / "bids", {
        "sub-01/anat/sub-01_T1w.nii.gz": scans["t1_same_head"],
        "sub-01/anat/sub-01_T2w.nii.gz": scans["t2"],
        "sub-01/anat/sub-01_FLAIR.nii.gz": scans["flair"],
    })
    out = tmp_path / "out"
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    code = _run_main([root, out, "participant", "--model", TINY_HF, "--general-model", TINY,
                      "--nprocs", "1", "-w", tmp_path / "work", "--resource-monitor"])
    assert not list(cwd.iterdir())  # nipype's monitor files stay in the work directory
    assert code == 0, capsys.readouterr().err
    anat = out / "sub-01" / "anat"
    assert sorted(p.name for p in anat.glob("*_T1w.nii.gz")) == [
        "sub-01_desc-synthsrFLAIR_T1w.nii.gz", "sub-01_desc-synthsrT1wT2w_T1w.nii.gz",
        "sub-01_desc-synthsr_T1w.nii.gz"]
    # every output has its reliability map; Hyperfine has no flip pass: no TTA number
    assert sorted(p.name for p in anat.glob("*_mask.nii.gz")) == [
        "sub-01_desc-synthsrFLAIRReliability_mask.nii.gz", "sub-01_desc-synthsrReliability_mask.nii.gz",
        "sub-01_desc-synthsrT1wT2wReliability_mask.nii.gz"]
    assert json.loads((anat / "sub-01_desc-synthsrT1wT2w_T1w.json").read_text())["ReliabilityQC"][
        "TTADisagreement"] is None
    meta = json.loads((anat / "sub-01_desc-synthsrT1wT2w_T1w.json").read_text())
    assert meta["Sources"] == ["bids:raw:sub-01/anat/sub-01_T1w.nii.gz",
                               "bids:raw:sub-01/anat/sub-01_T2w.nii.gz"]
    assert meta["Model"]["Name"] == TINY_HF.name
    flair = json.loads((anat / "sub-01_desc-synthsrFLAIR_T1w.json").read_text())
    assert flair["Model"]["Name"] == TINY.name
    assert json.loads((anat / "sub-01_desc-synthsr_T1w.json").read_text())["FusionInputs"] == 2
    assert list((out / "logs").glob("*/resource_monitor.jsonl"))


def test_output_space_native(tmp_path, scans, capsys):
    """``synthsr-bids --output-space native``: each scan's output also on its input's grid (issue 25)."""
    root = make_dataset(tmp_path / "bids", {"sub-01/anat/sub-01_T2w.nii.gz": scans["t2"],
                                            "sub-01/anat/sub-01_FLAIR.nii.gz": scans["flair"]})
    out = tmp_path / "out"
    code = _run_main([root, out, "participant", "--model", TINY, "--nprocs", "1", "-w", tmp_path / "work",
                      "--output-space", "native"])
    assert code == 0, capsys.readouterr().err
    anat = out / "sub-01" / "anat"
    for suffix, scan in (("T2w", "t2"), ("FLAIR", "flair")):
        native = nib.load(anat / f"sub-01_res-native_desc-synthsr{suffix}_T1w.nii.gz")
        assert native.shape == scans[scan].shape and np.allclose(native.affine, scans[scan].affine, atol=1e-5)
        meta = json.loads((anat / f"sub-01_res-native_desc-synthsr{suffix}_T1w.json").read_text())
        assert meta["Grid"]["Shape"] == list(scans[scan].shape)
        assert meta["Sources"][1] == f"bids:raw:sub-01/anat/sub-01_{suffix}.nii.gz"
        assert (anat / f"sub-01_desc-synthsr{suffix}Reliability_mask.nii.gz").is_file()
    fused = json.loads((anat / "sub-01_desc-synthsrReliability_mask.json").read_text())
    assert len(fused["QC"]["RegistrationResidual"]) == 2 and "prod_k" in fused["Formula"]


# ---------------------------------------------------------------------- CLI error paths
def test_failed_node_exit_1_with_text_crash_file(tmp_path, scans, capsys):
    header_only = scans["t2"].header.copy()
    hdr_img = nib.Nifti1Image(np.zeros((1, 1, 1), np.int16), scans["t2"].affine, header_only)
    hdr_img.header.set_data_shape(scans["t2"].shape)
    block = hdr_img.header.binaryblock + b"\x00" * 4
    root = make_dataset(tmp_path / "bids", {"sub-01/anat/sub-01_T2w.nii": block})
    out = tmp_path / "out"
    code = _run_main([root, out, "participant", "--model", TINY, "--nprocs", "1",
                      "-w", tmp_path / "work"])
    captured = capsys.readouterr().err
    assert code == 1 and "Traceback" not in captured
    assert "FAILED" in captured  # the progress line of the failed node
    # besides progress lines: one line naming the scan and the problem, then the one-line summary
    err = messages(captured)
    assert len(err) == 2, err
    assert err[0].startswith("ERROR: sub-01/anat/sub-01_T2w.nii: ") and "truncated" in err[0]
    assert "1 selected scan(s) not processed" in err[1]
    crashes = list((out / "logs").glob("*/crash-*.txt"))
    assert crashes and "sub-01_T2w.nii" in crashes[0].read_text()
    assert not list((out / "sub-01").rglob("*.nii.gz")) if (out / "sub-01").exists() else True


def test_no_usable_scan_exit_1(tmp_path, capsys):
    root = make_dataset(tmp_path / "bids", {"sub-01/anat/sub-01_T1w.nii.gz": b""})
    code = _run_main([root, tmp_path / "out", "participant", "--model", TINY,
                      "-w", tmp_path / "w"])
    err = capsys.readouterr().err
    assert code == 1 and "no usable anatomical scan matched" in err
    assert "empty file (0 bytes)" in err and not (tmp_path / "out").exists()
    code = _run_main([root, tmp_path / "out", "participant", "--model", TINY, "--suffixes",
                      "FLAIR", "-w", tmp_path / "w"])
    err = capsys.readouterr().err
    assert code == 1 and "suffix FLAIR" in err


def test_selected_participant_without_usable_scan_exit_1(tmp_path, scans, capsys):
    root = make_dataset(tmp_path / "bids", {"sub-01/anat/sub-01_T2w.nii.gz": scans["t2"],
                                            "sub-02/anat/sub-02_T1w.nii.gz": b""})
    code = _run_main([root, tmp_path / "out", "participant", "--model", TINY,
                      "--participant-label", "01", "02", "-w", tmp_path / "w"])
    err = capsys.readouterr().err
    assert code == 1 and "participant(s) 02 have no usable anatomical scan" in err
    assert "sub-02_T1w.nii.gz: empty file" in err and not (tmp_path / "out").exists()


def _header_only(img: nib.Nifti1Image) -> bytes:
    """A NIfTI header that promises data the file does not hold (fails at inference)."""
    hdr = nib.Nifti1Image(np.zeros((1, 1, 1), np.int16), img.affine, img.header.copy())
    hdr.header.set_data_shape(img.shape)
    return hdr.header.binaryblock + b"\x00" * 4


@pytest.mark.parametrize("stop,n_crashes", [(True, 1), (False, 2)])
def test_stop_on_first_crash(tmp_path, scans, capsys, stop, n_crashes):
    root = make_dataset(tmp_path / "bids", {
        "sub-01/anat/sub-01_T2w.nii": _header_only(scans["t2"]),
        "sub-01/anat/sub-01_FLAIR.nii": _header_only(scans["flair"]),
    })
    out = tmp_path / "out"
    args = [root, out, "participant", "--model", TINY, "--nprocs", "1", "-w", tmp_path / "w"]
    assert _run_main(args + (["--stop-on-first-crash"] if stop else [])) == 1
    assert len(list((out / "logs").glob("*/crash-*.txt"))) == n_crashes
    err = capsys.readouterr().err
    assert err.count("truncated or corrupted") == n_crashes
    assert f"{n_crashes} selected scan(s) not processed" in err


@pytest.mark.parametrize(
    "extra,code,message",
    [
        (["--participant-label", "../x"], 1, "invalid sub label"),
        (["--participant-label", "07"], 1, "participant label(s) 07 not found"),
        (["--session-label", "ses-a/b"], 1, "invalid ses label"),
        (["--model", "/nonexistent/model.h5"], 2, "model file does not exist"),
    ],
)
def test_user_errors(tmp_path, scans, capsys, extra, code, message):
    root = make_dataset(tmp_path / "bids", {"sub-01/anat/sub-01_T2w.nii.gz": scans["t2"]})
    args = [root, tmp_path / "out", "participant", "-w", tmp_path / "w"]
    if "--model" not in extra:
        args += ["--model", TINY]
    assert _run_main(args + extra) == code
    err = capsys.readouterr().err
    assert message in err and err.strip().count("\n") == 0


def test_work_dir_inside_bids_is_refused(tmp_path, scans, capsys):
    root = make_dataset(tmp_path / "bids", {"sub-01/anat/sub-01_T2w.nii.gz": scans["t2"]})
    assert _run_main([root, tmp_path / "out", "participant", "-w", root / "work"]) == 1
    assert "inside the BIDS dataset" in capsys.readouterr().err
    assert not (root / "work").exists()


def test_output_dir_inside_bids_only_under_derivatives(tmp_path, scans, capsys):
    root = make_dataset(tmp_path / "bids", {"sub-01/anat/sub-01_T2w.nii.gz": scans["t2"]})
    assert _run_main([root, root / "out", "participant", "-w", tmp_path / "w"]) == 1
    assert "output directory" in capsys.readouterr().err
    assert _run_main([root, root / "derivatives" / "synthsr", "participant", "--dry-run",
                      "-w", tmp_path / "w"]) == 0


def test_resource_monitor_without_psutil_exit_2(tmp_path, scans, capsys, monkeypatch):
    import sys

    root = make_dataset(tmp_path / "bids", {"sub-01/anat/sub-01_T2w.nii.gz": scans["t2"]})
    monkeypatch.setitem(sys.modules, "psutil", None)  # import psutil -> ImportError
    code = _run_main([root, tmp_path / "out", "participant", "--model", TINY,
                      "--resource-monitor", "-w", tmp_path / "w"])
    assert code == 2 and "needs psutil" in capsys.readouterr().err


def test_dry_run_with_database_and_without_validation(tmp_path, scans, capsys):
    root = make_dataset(tmp_path / "bids", {"sub-01/anat/sub-01_T2w.nii.gz": scans["t2"]})
    for extra in ([], ["--bids-database-dir", tmp_path / "db"], ["--skip-bids-validation"]):
        assert _run_main([root, tmp_path / "out", "participant", "--dry-run", *extra]) == 0
        text = capsys.readouterr().out
        assert "sub-01: 1 run(s), reference sub-01_T2w.nii.gz" in text
    assert any((tmp_path / "db").iterdir())


def test_bad_plugin_file(tmp_path, scans, capsys):
    root = make_dataset(tmp_path / "bids", {"sub-01/anat/sub-01_T2w.nii.gz": scans["t2"]})
    plugin = tmp_path / "p.yml"
    plugin.write_text("plugin_args: {}\n")
    code = _run_main([root, tmp_path / "out", "participant", "--model", TINY, "--use-plugin",
                      plugin, "-w", tmp_path / "w"])
    assert code == 1 and "'plugin' key" in capsys.readouterr().err


@pytest.mark.parametrize("yaml_text,plugin,poll", [
    (None, "MultiProc", 0.1),
    ("plugin: Linear\n", "Linear", 0.1),
    ("plugin: SLURM\nplugin_args:\n  sbatch_args: '-c 1'\n", "SLURM", 2.0),
    ("plugin: SLURM\nplugin_args:\n  poll_sleep_duration: 5\n", "SLURM", 5.0),
])
def test_plugin_poll_interval(tmp_path, yaml_text, plugin, poll):
    """Local plugins poll every 0.1 s; cluster plugins keep 2 s (each poll queries the scheduler once
    per pending job) unless the YAML says otherwise, which Nipype itself would ignore in plugin_args."""
    from synthsr_nipype.cli.bids_parser import get_parser
    from synthsr_nipype.cli.bids_settings import settings_from_args
    from synthsr_nipype.workflows.execution import NipypeSettings

    argv = [str(tmp_path), str(tmp_path / "out"), "participant", "--nprocs", "2", "--dry-run"]
    if yaml_text is not None:
        (tmp_path / "p.yml").write_text(yaml_text)
        argv += ["--use-plugin", str(tmp_path / "p.yml")]
    settings = NipypeSettings.from_run(settings_from_args(get_parser().parse_args(argv)).run)
    assert settings.plugin == plugin and settings.poll_seconds == poll
    assert "poll_sleep_duration" not in settings.plugin_args


def test_cluster_plugins_get_a_logname(monkeypatch):
    from synthsr_nipype.workflows.execution import ensure_logname

    monkeypatch.delenv("LOGNAME", raising=False)
    ensure_logname()
    assert os.environ["LOGNAME"]
    monkeypatch.setenv("LOGNAME", "someone")
    ensure_logname()
    assert os.environ["LOGNAME"] == "someone"


def test_version_and_parser_help(capsys):
    from synthsr_nipype import __version__
    from synthsr_nipype.cli.bids_parser import get_parser

    with pytest.raises(SystemExit) as exc:
        _run_main(["--version"])
    assert exc.value.code == 0 and __version__ in capsys.readouterr().out
    help_text = get_parser().format_help()
    for option in ("--participant-label", "--bids-filter-file", "--use-plugin", "--dry-run",
                   "--nprocs", "--omp-nthreads", "--mem-gb", "--write-graph", "exit codes"):
        assert option in help_text


# ------------------------------------------------------------------------ morphometry wiring
def test_single_subject_wf_with_morphometry_graph(tmp_path, scans):
    """--seg-backend: the fused derivative feeds the morphometry workflow, which gets the
    group's entities, the fused image's BIDS URI and the reference scan's SynthSR sidecar."""
    from synthsr_nipype.bids import build_layout, build_plan, collect_anat
    from synthsr_nipype.settings import MorphometryOptions, SynthSROptions
    from synthsr_nipype.workflows.base import init_single_subject_wf

    root = make_dataset(tmp_path / "bids", {
        "sub-01/ses-1/anat/sub-01_ses-1_T2w.nii.gz": scans["t2"],
        "sub-01/ses-1/anat/sub-01_ses-1_FLAIR.nii.gz": scans["flair"],
    })
    plan = build_plan(collect_anat(build_layout(root)), bids_dir=root, base_features=2)
    group = plan.groups[0]
    plain = init_single_subject_wf(group=group, output_dir=str(tmp_path / "out"))
    assert "morphometry_wf" not in {n.name for n in plain._graph.nodes()}
    wf = init_single_subject_wf(group=group, output_dir=str(tmp_path / "out"),  # --tbm alone: ants
                                morphometry=MorphometryOptions(tbm=True, template_resolution=2))
    morph = wf.get_node("morphometry_wf")
    assert morph is not None and morph.get_node("ants_seg") is not None
    assert morph.get_node("tbm").inputs.template_resolution == 2
    inputs = morph.get_node("inputnode").inputs
    assert inputs.source_entities == {"subject": "01", "session": "1"}
    assert inputs.sources == ["bids::sub-01/ses-1/anat/sub-01_ses-1_desc-synthsr_T1w.nii.gz"]
    edges = {(u.name, v.name): d["connect"] for u, v, d in wf._graph.edges(data=True)}
    # the fused derivative (written by ds_anat_wf's ds_fused) feeds the morphometry
    assert ("outputnode.fused_file", "inputnode.t1w") in edges[("ds_anat_wf", "morphometry_wf")]
    ds_anat = wf.get_node("ds_anat_wf")
    ds_edges = {(u.name, v.name): d["connect"] for u, v, d in ds_anat._graph.edges(data=True)}
    assert ("out_file", "fused_file") in ds_edges[("ds_fused", "outputnode")]
    ref = f"synthsr_{group.jobs[group.reference_job or 0].name}_wf"
    assert ("outputnode.out_json", "inputnode.synthsr_metadata") in edges[(ref, "morphometry_wf")]
    sink = morph.get_node("ds_morphometry_wf").get_node("ds_dseg")
    assert sink.inputs.base_directory == str(tmp_path / "out")
    assert sink.inputs.entities == {"segmentation": "ants", "suffix": "dseg"}
    assert morph.get_node("cortical_thickness") is None
    # --thickness alone: ants, DiReCT on its posteriors, map and table written as derivatives
    wf = init_single_subject_wf(group=group, output_dir=str(tmp_path / "out"),
                                morphometry=MorphometryOptions(thickness=True, template_resolution=2))
    morph = wf.get_node("morphometry_wf")
    edges = {(u.name, v.name): d["connect"] for u, v, d in morph._graph.edges(data=True)}
    assert ("probsegs", "probsegs") in edges[("ants_seg", "cortical_thickness")]
    assert ("from_template", "from_template") in edges[("template_reg", "cortical_thickness")]
    ds = morph.get_node("ds_morphometry_wf")
    assert ds.get_node("ds_thickness").inputs.entities == {"segmentation": "ants", "desc": "thickness",
                                                           "suffix": "map"}
    assert ds.get_node("ds_thickness_tsv").inputs.entities["suffix"] == "morph"
    # --seg-backend synthseg --thickness: SynthSeg's own posteriors and labels, no template registration;
    # its tissue posteriors are written as _probseg (as the ants backend's)
    wf = init_single_subject_wf(group=group, output_dir=str(tmp_path / "out"),
                                morphometry=MorphometryOptions(seg_backend="synthseg", thickness=True,
                                                               synthseg_parc=True, thickness_iterations=3))
    morph = wf.get_node("morphometry_wf")
    assert morph.get_node("template_reg") is None and morph.get_node("ants_seg") is None
    edges = {(u.name, v.name): d["connect"] for u, v, d in morph._graph.edges(data=True)}
    assert ("dseg", "dseg") in edges[("fs_volumetry", "cortical_thickness")]
    assert morph.get_node("cortical_thickness").inputs.iterations == 3
    assert {("thickness_gm", "gm"), ("thickness_wm", "wm")} <= set(edges[("synthseg", "cortical_thickness")])
    synthseg = morph.get_node("synthseg").inputs
    assert synthseg.tissue_probsegs and synthseg.thickness_posteriors and not synthseg.posteriors
    ds = morph.get_node("ds_morphometry_wf")
    for tissue in ("CSF", "GM", "WM"):
        assert ds.get_node(f"ds_probseg_{tissue}").inputs.entities == {"segmentation": "synthseg", "label": tissue,
                                                                       "suffix": "probseg"}
    assert ds.get_node("ds_thickness").inputs.entities["segmentation"] == "synthseg"
    assert "per cortical parcel" in morph.__desc__
    # without --thickness the node sums only the tissue posteriors
    plain = init_single_subject_wf(group=group, output_dir=str(tmp_path / "out"),
                                   morphometry=MorphometryOptions(seg_backend="synthseg"))
    morph = plain.get_node("morphometry_wf")
    assert morph.get_node("cortical_thickness") is None
    synthseg = morph.get_node("synthseg").inputs
    assert synthseg.tissue_probsegs and not synthseg.thickness_posteriors
    assert synthseg.device == "auto" and not synthseg.use_gpu  # SynthSROptions' defaults
    # --device cuda: the SynthSeg port runs where SynthSR does and takes a MultiProc GPU slot as its nodes do
    gpu = init_single_subject_wf(group=group, output_dir=str(tmp_path / "out"),
                                 synthsr=SynthSROptions(device="cuda", use_gpu=True),
                                 morphometry=MorphometryOptions(seg_backend="synthseg"))
    node = gpu.get_node("morphometry_wf").get_node("synthseg")
    assert node.inputs.device == "cuda" and node.is_gpu_node()


@pytest.mark.parametrize(
    "backend,missing",
    [("synthseg-fs", "mri_synthseg not found on PATH"), ("samseg", "run_samseg not found on PATH"),
     ("recon-all", "recon-all, mri_segstats not found on PATH")],
)
def test_freesurfer_backend_missing_exit_2_before_any_work(tmp_path, scans, capsys, monkeypatch,
                                                           backend, missing):
    import os
    import sys

    root = make_dataset(tmp_path / "bids", {"sub-01/anat/sub-01_T2w.nii.gz": scans["t2"]})
    for var in ("FREESURFER_HOME", "FS_LICENSE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PATH", os.pathsep.join([str(Path(sys.executable).parent), "/usr/bin", "/bin"]))
    out, work = tmp_path / "out", tmp_path / "w"
    code = _run_main([root, out, "participant", "--model", TINY, "--seg-backend", backend,
                      "-w", work])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().count("\n") == 0, err
    assert f"--seg-backend {backend}: {missing}; FREESURFER_HOME is unset" in err
    assert not out.exists() and not work.exists()  # nothing done, nothing written


def test_seg_backend_choice_and_tbm_default():
    from synthsr_nipype.cli.bids_parser import DefaultStr, get_parser
    from synthsr_nipype.cli.bids_settings import settings_from_args

    parse = get_parser().parse_args
    base = [str(SHARED), "out", "participant", "--dry-run"]

    def _seg_backend(args):
        return settings_from_args(args).morphometry.seg_backend

    args = parse(base)
    assert args.seg_backend == "none" and _seg_backend(args) is None  # SynthSR only
    assert isinstance(args.model, DefaultStr) and args.model == "v2"
    assert _seg_backend(parse([*base, "--tbm"])) == "ants"
    assert _seg_backend(parse([*base, "--thickness"])) == "ants"
    from synthsr_nipype.errors import UsageError

    with pytest.raises(UsageError, match="--thickness-iterations needs --thickness"):
        settings_from_args(parse([*base, "--thickness-iterations", "5"]))
    with pytest.raises(UsageError, match="--thickness-iterations must be at least 3"):
        settings_from_args(parse([*base, "--thickness", "--thickness-iterations", "2"]))
    with pytest.raises(UsageError, match="--thickness needs the GM/WM posteriors of --seg-backend ants or "
                                         "synthseg, not samseg"):
        settings_from_args(parse([*base, "--thickness", "--seg-backend", "samseg"]))
    assert settings_from_args(parse([*base, "--thickness"])).morphometry.thickness is True
    assert _seg_backend(parse([*base, "--seg-backend", "synthseg", "--tbm"])) == "synthseg"
    # at the group level --seg-backend selects volumes: none means any, --tbm implies nothing
    group = [str(SHARED), "out", "group"]
    assert _seg_backend(parse([*group, "--tbm"])) is None
    assert _seg_backend(parse([*group, "--seg-backend", "ants"])) == "ants"
    assert not isinstance(parse([*base, "--model", "v2"]).model, DefaultStr)
    args = parse([*base, "--no-synthseg-robust", "--synthseg-parc", "--template-resolution", "2"])
    assert (args.synthseg_robust, args.synthseg_parc, args.template_resolution) == (False, True, 2)
    with pytest.raises(SystemExit):
        parse([*base, "--seg-backend", "fast"])


def test_dry_run_checks_only_the_models_the_run_uses(tmp_path, scans, capsys, monkeypatch):
    """--dry-run --model lite: no false 'a real run would stop: model v2 not found' (the general
    model is only checked when a job of the plan uses it); a missing --model is still reported."""
    from synthsr_nipype.model import registry

    root = make_dataset(tmp_path / "bids", {"sub-01/anat/sub-01_T2w.nii.gz": scans["t2"]})
    monkeypatch.setenv("SYNTHSR_MODELS_DIR", str(tmp_path / "no-models"))
    monkeypatch.delenv("FREESURFER_HOME", raising=False)
    monkeypatch.setattr(registry, "user_models_dir", lambda: tmp_path / "no-cache")
    assert _run_main([root, tmp_path / "out", "participant", "--dry-run", "--model", "lite"]) == 0
    text = capsys.readouterr().out
    print(text)
    assert "sub-01: 1 run(s)" in text and "a real run would stop" not in text
    assert _run_main([root, tmp_path / "out", "participant", "--dry-run", "--model", "v2"]) == 0
    assert "a real run would stop: " in capsys.readouterr().out
