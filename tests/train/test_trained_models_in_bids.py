"""synthsr-bids with models trained by this package: the card's channels form the multi-channel runs,
and the bundled `lite` model runs with nothing but the repository."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch

from synthsr_nipype.cli.bids_app import main as bids_main
from synthsr_nipype.model import published_spec
from synthsr_nipype.model.card import save_card_model
from synthsr_nipype.model.registry import BUNDLED_DIR, MODELS
from synthsr_nipype.train.unet import TrainableUNet, export_state_dict

LITE = BUNDLED_DIR / MODELS["lite"].filename


def head(shape, zooms, seed):
    """A smooth ellipsoid 'head' with some texture, big enough for the BIDS-App's checks."""
    grids = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
    inside = sum(g**2 for g in grids) < 0.7
    rng = np.random.default_rng(seed)
    data = np.where(inside, 300 + 60 * rng.random(shape), 0).astype(np.float32)
    return nib.Nifti1Image(data, np.diag([*zooms, 1.0]))


def dataset(root, scans):
    root.mkdir()
    (root / "dataset_description.json").write_text(json.dumps({"Name": "t", "BIDSVersion": "1.8.0"}))
    anat = root / "sub-01" / "anat"
    anat.mkdir(parents=True)
    for i, (suffix, shape, zooms) in enumerate(scans):
        nib.save(head(shape, zooms, i), anat / f"sub-01_{suffix}.nii.gz")
    return root


def test_two_channel_card_model_forms_one_run_from_t2w_and_flair(tmp_path):
    torch.manual_seed(0)
    spec = published_spec(4, in_channels=2, n_levels=3)
    card = {"name": "t2-flair", "channels": [{"suffix": "T2w"}, {"suffix": "FLAIR"}],
            "normalisation": "minmax", "output": "synthsr-general"}
    model = save_card_model(tmp_path / "t2_flair.safetensors", spec, export_state_dict(TrainableUNet(spec).eval()),
                            card)
    bids = dataset(tmp_path / "bids", [("T2w", (48, 56, 10), (1.0, 1.0, 5.0)),
                                       ("FLAIR", (48, 11, 48), (1.0, 5.0, 1.0))])
    out = tmp_path / "out"
    code = bids_main([str(bids), str(out), "participant", "--model", str(model), "--skip-bids-validation",
                      "--nprocs", "1", "--omp-nthreads", "1", "-w", str(tmp_path / "work"), "--device", "cpu"])
    assert code == 0
    produced = sorted(p.name for p in (out / "sub-01" / "anat").glob("*.nii.gz"))
    assert "sub-01_desc-synthsrT2wFLAIR_T1w.nii.gz" in produced, produced
    sidecar = json.loads((out / "sub-01" / "anat" / "sub-01_desc-synthsrT2wFLAIR_T1w.json").read_text())
    assert "t2_flair" in json.dumps(sidecar)


@pytest.mark.skipif(not LITE.is_file(), reason="the bundled lite model is not in this checkout")
def test_bids_app_runs_the_bundled_lite_model(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SYNTHSR_MODELS_DIR", str(tmp_path / "no-models"))
    monkeypatch.delenv("FREESURFER_HOME", raising=False)
    bids = dataset(tmp_path / "bids", [("FLAIR", (64, 72, 12), (1.0, 1.0, 5.0))])
    out = tmp_path / "out"
    code = bids_main([str(bids), str(out), "participant", "--model", "lite", "--skip-bids-validation",
                      "--nprocs", "1", "--omp-nthreads", "1", "-w", str(tmp_path / "work"), "--device", "cpu"])
    assert code == 0
    outputs = list((out / "sub-01" / "anat").glob("*synthsr*_T1w.nii.gz"))
    assert outputs and np.asarray(nib.load(outputs[0]).dataobj).max() > 0
    # what lite is, wherever it is used: the console, the sidecar, the report, the methods text
    notes = MODELS["lite"].notes
    err = capsys.readouterr().err
    assert f"NOTE: {notes.note}" in err.splitlines()
    sidecar = json.loads(outputs[0].with_name(outputs[0].name.replace(".nii.gz", ".json")).read_text())
    assert sidecar["ModelNotes"] == notes.note
    assert (out / "sub-01.html").is_file(), err
    page = (out / "sub-01.html").read_text()
    assert 'class="model-note"' in page and "not a published SynthSR model" in page
    citation = (out / "logs" / "CITATION.md").read_text()
    assert notes.methods in citation and "MP-RAGE-like T1-weighted image with SynthSR" not in citation
