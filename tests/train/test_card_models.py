"""Models trained by this package: the card in the safetensors file, loading, multi-channel inference."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from synthsr_nipype.cli import models as models_cli
from synthsr_nipype.errors import ModelError
from synthsr_nipype.inference import load_volume, prepare_channels, prepare_general, run
from synthsr_nipype.model import load_model, published_spec
from synthsr_nipype.model.card import read_card, save_card_model
from synthsr_nipype.train.export import export_checkpoint
from synthsr_nipype.train.trainer import Trainer
from synthsr_nipype.train.unet import TrainableUNet, export_state_dict
from tests.paths import LABELS

from .tiny import MAPS, tiny_config

TWO_CHANNELS = {"tables": str(MAPS), "crop": [32, 32, 32], "channels": [
    {"suffix": "T2w", "contrast": "t2", "spacing": [1, 1, 5]},
    {"suffix": "FLAIR", "contrast": "uniform", "spacing": [1, 5, 1]}]}


def card_for(suffixes: list[str]) -> dict:
    return {"name": "test", "channels": [{"suffix": s} for s in suffixes], "normalisation": "minmax",
            "output": "synthsr-general"}


def scan(path, shape, zooms, seed=0):
    rng = np.random.default_rng(seed)
    data = np.zeros(shape, np.float32)
    data[1:-1, 1:-1, 1:-1] = 100 + 50 * rng.random((shape[0] - 2, shape[1] - 2, shape[2] - 2))
    nib.save(nib.Nifti1Image(data, np.diag([*zooms, 1.0])), path)
    return path


@pytest.mark.skipif(not (LABELS / "synthsr").is_dir(), reason="shared label maps not available")
def test_two_channel_model_from_the_trainer_runs_on_one_image_per_channel(tmp_path):
    trainer = Trainer(tiny_config(tmp_path / "run", generator=TWO_CHANNELS, steps=1, checkpoint_every=1))
    trainer.fit(progress=False)
    model_file = export_checkpoint(trainer.latest_checkpoint(), tmp_path / "t2_flair.safetensors")
    spec, card = read_card(model_file)
    assert spec.in_channels == 2 and card.suffixes == ("T2w", "FLAIR")
    assert [c["spacing"] for c in card.data["channels"]] == [[1, 1, 5], [1, 5, 1]]

    t2 = scan(tmp_path / "t2.nii.gz", (40, 44, 10), (1.0, 1.0, 5.0))
    flair = scan(tmp_path / "flair.nii.gz", (40, 9, 50), (1.0, 5.0, 1.0), seed=1)
    out = run([t2, flair], model=model_file, device="cpu", threads=1)
    assert out.get_data_dtype() == np.uint8
    assert np.allclose(out.header.get_zooms()[:3], 1.0)
    assert out.shape == (40, 44, 50)  # the first channel's field of view on 1 mm
    with pytest.raises(ModelError, match="takes 2 image"):
        run(t2, model=model_file, device="cpu")


def test_prepare_channels_reslices_onto_the_first_grid_and_normalises_each(tmp_path):
    t2 = load_volume(scan(tmp_path / "t2.nii.gz", (40, 44, 10), (1.0, 1.0, 5.0)))
    flair = load_volume(scan(tmp_path / "flair.nii.gz", (40, 9, 50), (1.0, 5.0, 1.0), seed=1))
    prepared = prepare_channels([t2, flair], multiple=8)
    x = prepared.net_input
    assert x.shape == (1, 2, 40, 48, 56) and x.dtype == torch.float32
    for c in range(2):
        assert float(x[0, c].min()) == 0.0 and float(x[0, c].max()) == 1.0
    inside = x[0, :, 10:30, 10:30, 10:40]
    assert float(inside[1].min()) > 0.3  # the FLAIR's content lands inside the T2's brain box
    alone = prepare_general(t2, multiple=8).net_input
    assert torch.equal(alone[0, 0], x[0, 0])  # the first channel is prepared as a one-channel model's input


def test_exported_weights_are_loaded_unchanged(tmp_path):
    torch.manual_seed(0)
    spec = published_spec(4, in_channels=2, n_levels=3)
    state = export_state_dict(TrainableUNet(spec).eval())
    path = save_card_model(tmp_path / "m.safetensors", spec, state, card_for(["T2w", "FLAIR"]))
    model = load_model(path)
    assert model.spec == spec and model.card.suffixes == ("T2w", "FLAIR")
    loaded = model.net.state_dict()
    assert all(torch.equal(loaded[k], state[k]) for k in state)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp file left


def test_card_must_match_the_network(tmp_path):
    spec = published_spec(4, in_channels=1, n_levels=3)
    state = export_state_dict(TrainableUNet(spec))
    with pytest.raises(ModelError, match="2 channel"):
        save_card_model(tmp_path / "m.safetensors", spec, state, card_for(["T2w", "FLAIR"]))
    with pytest.raises(ModelError, match="normalisation"):
        save_card_model(tmp_path / "m.safetensors", spec, state, {**card_for(["T2w"]), "normalisation": "zscore"})
    assert not list(tmp_path.iterdir())


def test_residual_models_are_exported_but_refused_at_loading(tmp_path):
    spec = published_spec(4, in_channels=1, n_levels=3)
    path = save_card_model(tmp_path / "r.safetensors", spec, export_state_dict(TrainableUNet(spec)),
                           {**card_for(["T1w"]), "output": "synthsr-residual"})
    with pytest.raises(ModelError, match="residual"):
        load_model(path)
    assert read_card(path, runnable=False)[1].data["output"] == "synthsr-residual"


def test_safetensors_without_a_card_is_one_clear_error(tmp_path):
    path = tmp_path / "bare.safetensors"
    save_file({"x": torch.zeros(2)}, str(path))
    with pytest.raises(ModelError, match="without a SynthSR model card"):
        load_model(path)


def test_models_card_prints_the_json(tmp_path, capsys):
    spec = published_spec(4, in_channels=1, n_levels=3)
    path = save_card_model(tmp_path / "m.safetensors", spec, export_state_dict(TrainableUNet(spec)),
                           card_for(["T1w"]))
    assert models_cli.main(["card", str(path)]) == 0
    assert json.loads(capsys.readouterr().out)["channels"] == [{"suffix": "T1w"}]
    assert models_cli.main(["card", str(tmp_path / "absent.safetensors")]) == 2
