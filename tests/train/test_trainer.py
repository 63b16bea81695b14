"""synthsr-train: reproducible steps, exact resume, validation, the config and its flags, export."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import signal

import nibabel as nib
import numpy as np
import pytest
import torch

from synthsr_nipype.cli import train as train_cli
from synthsr_nipype.model import load_model
from synthsr_nipype.model.card import read_card
from synthsr_nipype.train.config import ConfigError, TrainConfig, load_config
from synthsr_nipype.train.trainer import Trainer, step_seed
from tests.paths import LABELS

from .tiny import TINY_GENERATOR, tiny_config, write_config

pytestmark = pytest.mark.skipif(not (LABELS / "synthsr").is_dir(), reason="shared label maps not available")


def weights(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in trainer.net.state_dict().items()}


def test_step_seeds_differ_per_step_and_per_run_seed():
    seeds = {step_seed(s, k) for s in range(3) for k in range(50)}
    assert len(seeds) == 150


def test_resume_gives_the_weights_of_an_uninterrupted_run(tmp_path):
    config = tiny_config(tmp_path / "a", steps=4, checkpoint_every=2)
    straight = Trainer(config)
    straight.fit(progress=False)

    first = Trainer(tiny_config(tmp_path / "b", steps=4, checkpoint_every=2))
    first.fit(steps=2, progress=False)
    resumed = Trainer(tiny_config(tmp_path / "b", steps=4, checkpoint_every=2))
    resumed.load_checkpoint(first.latest_checkpoint())
    assert resumed.state.step == 2
    resumed.fit(progress=False)

    a, b = weights(straight), weights(resumed)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]
    # and training did move them: the test would not pass on a network that never changes
    assert not all(torch.equal(a[k], weights(Trainer(config))[k]) for k in a)
    with open(tmp_path / "b" / "log.csv", newline="") as handle:
        assert [int(r["step"]) for r in csv.DictReader(handle)] == [1, 2, 3, 4]


def test_stages_change_the_generator_from_their_step_on(tmp_path):
    trainer = Trainer(tiny_config(tmp_path, stages=[{"from_step": 2, "generator": {"crop": [16, 24, 16]}}]))
    assert trainer.generator_at(1).config.crop == (32, 32, 32)
    assert trainer.generator_at(2).config.crop == (16, 24, 16)
    trainer.fit(steps=3, progress=False)
    assert trainer.checkpoint_payload()["generator_now"]["crop"] == [16, 24, 16]


def test_stages_lower_the_learning_rate_from_their_step_on(tmp_path):
    trainer = Trainer(tiny_config(tmp_path, learning_rate=1e-3, stages=[{"from_step": 2, "learning_rate": 1e-5}]))
    assert [trainer.config.learning_rate_at(s) for s in (0, 1, 2, 9)] == [1e-3, 1e-3, 1e-5, 1e-5]
    trainer.fit(steps=2, progress=False)
    assert trainer.optimizer.param_groups[0]["lr"] == 1e-3
    trainer.fit(steps=3, progress=False)
    assert trainer.optimizer.param_groups[0]["lr"] == 1e-5


def test_ctrl_c_lets_the_step_finish(tmp_path):
    trainer = Trainer(tiny_config(tmp_path))
    step = trainer.train_step

    def interrupted_step() -> float:
        os.kill(os.getpid(), signal.SIGINT)  # arrives in the middle of the step
        return step()

    trainer.train_step = interrupted_step
    with pytest.raises(KeyboardInterrupt):
        trainer.fit(progress=False)
    assert trainer.state.step == 1  # the step was finished, not torn


def test_crop_must_fit_the_network_depth(tmp_path):
    with pytest.raises(ConfigError, match="multiple of 4"):
        Trainer(tiny_config(tmp_path, stages=[{"from_step": 2, "generator": {"crop": [18, 16, 16]}}]))


def test_validation_is_fixed_and_leaves_the_network_alone(tmp_path):
    trainer = Trainer(tiny_config(tmp_path))
    trainer.fit(steps=1, progress=False)
    before = weights(trainer)
    first, second = trainer.validate(), trainer.validate()
    assert first == second and np.isfinite(first)
    after = weights(trainer)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert trainer.net.training


def test_validation_maps_are_held_out_of_training(tmp_path):
    trainer = Trainer(tiny_config(tmp_path))
    held_out = {p.name for p in trainer.val_maps}
    assert held_out and not held_out & {p.name for p in trainer.train_maps}


def test_flags_override_the_yaml(tmp_path):
    path = write_config(tmp_path, steps=7, network={"n_levels": 3, "base_features": 4})
    args = train_cli.build_parser().parse_args([str(path), "--steps", "3", "--base-features", "6", "--crop",
                                                "16", "16", "16", "--learning-rate", "0.001", "--no-bf16"])
    config = load_config(path, train_cli.overrides_from_args(args))
    assert (config.steps, config.network.base_features, config.network.n_levels) == (3, 6, 3)
    assert config.generator["crop"] == [16, 16, 16] and config.learning_rate == 1e-3 and config.bf16 is False


def test_every_config_key_has_a_flag():
    parser = train_cli.build_parser()
    dests = {a.dest for a in parser._actions}
    for name in TrainConfig.__dataclass_fields__:
        assert f"cfg__{name}" in dests or name in ("generator", "network", "stages"), name
    args = parser.parse_args(["c.yaml", "--set", "stages=[{from_step: 5, generator: {crop: 64}}]"])
    assert train_cli.overrides_from_args(args)["stages"] == [{"from_step": 5, "generator": {"crop": 64}}]


@pytest.mark.parametrize("problem,text", [("unknown key", "stepz: 3\n"), ("missing", "steps: 3\n"),
                                          ("not yaml", "steps: [\n")])
def test_bad_config_is_one_line_exit_2(tmp_path, capsys, problem, text):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    assert train_cli.main([str(path), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ERROR:") and str(path) in err[0]


def test_missing_label_map_is_named(tmp_path):
    with pytest.raises(ConfigError, match="absent.nii.gz"):
        Trainer(TrainConfig.from_dict({"label_maps": [str(tmp_path / "absent.nii.gz")],
                                       "generator": TINY_GENERATOR}))


def test_cli_trains_exports_and_synthsr_runs_the_model(tmp_path, capsys):
    """The CI smoke training: tiny net, a few steps; the exported model runs through `synthsr --model`."""
    path = write_config(tmp_path, steps=3, checkpoint_every=2)
    assert train_cli.main([str(path), "--quiet"]) == 0
    model_file = tmp_path / "run" / "model.safetensors"
    assert model_file.is_file() and (tmp_path / "run" / "best.safetensors").is_file()

    spec, card = read_card(model_file)
    data = card.data
    assert card.suffixes == ("T2w",) and spec.in_channels == 1 and spec.n_levels == 3
    assert data["training"]["steps"] == 3 and data["training"]["seed"] == 0
    assert data["normalisation"] == "minmax" and data["output"] == "synthsr-general"
    maps = data["training"]["label_maps"]
    first = maps["training"][0]
    source = next(LABELS.rglob(first["file"]))
    assert first["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    assert maps["validation"] and data["package_version"]
    assert data["generator"]["crop"] == [32, 32, 32]
    json.dumps(data)

    image = tmp_path / "scan.nii.gz"
    rng = np.random.default_rng(0)
    nib.save(nib.Nifti1Image(rng.random((40, 36, 12)).astype(np.float32), np.diag([1.0, 1.0, 3.0, 1.0])), image)
    from synthsr_nipype.cli import synthsr

    out = tmp_path / "scan_synthsr.nii.gz"
    assert synthsr.main(["--i", str(image), "--o", str(out), "--model", str(model_file)]) == 0
    result = nib.load(out)
    assert result.get_data_dtype() == np.uint8 and np.allclose(result.header.get_zooms()[:3], 1.0)

    # exported weights are the checkpoint's, with BatchNorm folded
    model = load_model(model_file)
    assert model.card is not None and model.card.suffixes == ("T2w",)


def test_export_only_and_resume_latest(tmp_path, capsys):
    path = write_config(tmp_path, steps=2, checkpoint_every=1)
    assert train_cli.main([str(path), "--quiet"]) == 0
    assert train_cli.main([str(path), "--quiet", "--steps", "3", "--resume"]) == 0
    assert "resuming from" in capsys.readouterr().err
    target = tmp_path / "exported.safetensors"
    assert train_cli.main([str(path), "--export-only", "--resume", "--export", str(target)]) == 0
    assert read_card(target)[1].data["training"]["steps"] == 3


def test_export_can_recalibrate_batch_norm(tmp_path):
    path = write_config(tmp_path, steps=1, checkpoint_every=1)
    assert train_cli.main([str(path), "--quiet", "--export", str(tmp_path / "plain.safetensors")]) == 0
    assert train_cli.main([str(path), "--quiet", "--export-only", "--bn-recalibration", "2",
                           "--export", str(tmp_path / "recal.safetensors")]) == 0
    card = read_card(tmp_path / "recal.safetensors")[1].data
    assert card["training"]["batch_norm_recalibration"]["samples"] == 2
    plain, recal = load_model(tmp_path / "plain.safetensors"), load_model(tmp_path / "recal.safetensors")
    assert torch.equal(plain.net.down[0][0].weight, recal.net.down[0][0].weight)
    assert not torch.equal(plain.net.bn_down_0_shift, recal.net.bn_down_0_shift)


def test_resume_without_checkpoint_is_exit_2(tmp_path, capsys):
    path = write_config(tmp_path, steps=2)
    assert train_cli.main([str(path), "--quiet", "--resume"]) == 2
    assert "no checkpoint" in capsys.readouterr().err


def test_time_budget_stops_after_the_step_under_way_with_a_checkpoint(tmp_path, capsys):
    config = write_config(tmp_path, steps=1000, checkpoint_every=1000)
    # a budget of ~0 s: the first step finishes, is checkpointed and exported, and the run ends
    assert train_cli.main([str(config), "--quiet", "--time-budget", "1e-9"]) == 0
    err = capsys.readouterr().err
    print(err.strip().splitlines()[-1])
    assert "stopped at step 1 of 1000" in err
    run = tmp_path / "run"
    assert sorted(p.name for p in (run / "checkpoints").glob("checkpoint-*.pt")) == ["checkpoint-0000001.pt"]
    assert (run / "model.safetensors").is_file()
    with pytest.raises(SystemExit):
        train_cli.main([str(config), "--time-budget", "0"])


def test_validation_prints_the_linear_baseline_on_t1_contrast_inputs(tmp_path, capsys):
    from synthsr_nipype.train.trainer import linear_fit

    # the baseline is the least-squares line: exact on an input that is a line of the target
    x = torch.rand(2, 1, 8, 8, 8)
    assert torch.allclose(linear_fit(x, 3 * x - 0.5), 3 * x - 0.5, atol=1e-5)
    config = write_config(tmp_path, steps=2, checkpoint_every=2, validate_every=2)
    assert train_cli.main([str(config), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "step 2: validation loss" in err and "linear rescaling of the input" in err
    with open(tmp_path / "run" / "log.csv", newline="") as handle:
        last = list(csv.DictReader(handle))[-1]
    # T1-contrast inputs from the target's prior: a linear map of a T1 already fits a T1 well
    assert 0 < float(last["val_t1_linear"]) < float(last["val_t1_loss"])


def test_initial_weights_start_the_network_from_an_exported_model(tmp_path):
    first = write_config(tmp_path, steps=2, checkpoint_every=2)
    assert train_cli.main([str(first), "--quiet", "--export", str(tmp_path / "start.safetensors")]) == 0
    start = load_model(tmp_path / "start.safetensors")
    trainer = Trainer(tiny_config(tmp_path / "second", initial_weights=str(tmp_path / "start.safetensors"),
                                  initial_batches=2))
    assert trainer.start_from_weights(tmp_path / "start.safetensors") == 2
    x = trainer.generator.sample(1, seed=5).inputs
    trainer.net.eval()
    with torch.no_grad():
        ours, theirs = trainer.net(x), start.net(x)
    # eval mode computes the exported model exactly (BatchNorm re-expressed around measured statistics)
    assert torch.allclose(ours, theirs, atol=1e-4)
    with pytest.raises(ConfigError, match="differs from the config"):
        Trainer(tiny_config(tmp_path / "third", network={"n_levels": 3, "base_features": 8})).start_from_weights(
            tmp_path / "start.safetensors")


def test_generator_device_is_the_training_device_or_the_cpu(tmp_path):
    on_device = Trainer(tiny_config(tmp_path, generator_device="device", device="cpu"))
    assert on_device.generator.device == on_device.device
    plain = Trainer(tiny_config(tmp_path / "b"))
    # the random numbers are drawn on the CPU either way: the same batch for the same seed
    assert torch.equal(on_device.generator.sample(1, seed=3).target, plain.generator.sample(1, seed=3).target)
    with pytest.raises(ConfigError, match="generator_device"):
        tiny_config(tmp_path, generator_device="gpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_training_device_is_the_inference_device_rule(tmp_path, capsys):
    """One pick_device: a training config's device goes through the inference rule (a missing CUDA GPU
    is a DeviceError: one line, exit 2, as synthsr --device cuda)."""
    from synthsr_nipype.inference import pick_device
    from synthsr_nipype.model import device
    from synthsr_nipype.train import trainer

    assert trainer.pick_device is device.pick_device is pick_device
    path = write_config(tmp_path, steps=1, device="cuda")
    code = train_cli.main([str(path), "--quiet"])
    err = capsys.readouterr().err
    print(code, err.strip())
    assert code == 2 and err.startswith("ERROR: --device cuda: no CUDA GPU") and err.count("\n") == 1
