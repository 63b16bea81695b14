"""The generator's transforms, each against its documented property."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch

from synthsr_nipype.synth import (
    TARGET_SCALE,
    Acquisition,
    BiasField,
    ChannelConfig,
    ClassTable,
    GaussianMixture,
    GeneratorConfig,
    SynthGenerator,
    swap_table,
)
from synthsr_nipype.synth.random import sample_generator
from tests.paths import SHARED

LABELS = SHARED / "data" / "labels"
SYNTHSR = LABELS / "synthsr"
SYNTHSEG = LABELS / "synthseg"
pytestmark = pytest.mark.skipif(not LABELS.is_dir(), reason=f"shared label maps not available: {LABELS}")

STILL = {"scaling": 0.0, "rotation_deg": 0.0, "shearing": 0.0, "nonlin_std_mm": 0.0}


def _generator(maps, tables=SYNTHSR, **overrides) -> SynthGenerator:
    config = {"tables": str(tables), "crop": 48, "channels": [{"contrast": "t2", "spacing": [1, 1, 5]}]}
    config.update(overrides)
    return SynthGenerator(maps, GeneratorConfig.from_dict(config))


def test_same_seed_gives_bit_identical_batches_and_other_seeds_differ():
    gen = _generator([SYNTHSR / "brain1_labels.nii.gz", SYNTHSR / "brain2_labels.nii.gz"])
    first, again, other = gen.sample(2, seed=11), gen.sample(2, seed=11), gen.sample(2, seed=12)
    assert torch.equal(first.inputs, again.inputs) and torch.equal(first.target, again.target)
    assert torch.equal(first.labels, again.labels)
    assert not torch.equal(first.inputs, other.inputs)
    assert first.inputs.shape == (2, 1, 48, 48, 48) and first.target.shape == (2, 1, 48, 48, 48)
    assert first.inputs.dtype == torch.float32
    # each channel is min-max normalised as the inference normalises its input
    assert float(first.inputs.amin()) == 0.0 and float(first.inputs.amax()) == 1.0
    described = json.loads(json.dumps(first.describe()))  # plain values only
    sample = described["samples"][0]
    assert {"label_map", "spatial", "channels", "target"} <= set(sample)
    assert {"spacing_mm", "thickness_mm", "blur_sigma_mm", "gamma", "bias_std", "noise_std", "gmm"} <= \
        set(sample["channels"][0])
    print("describe keys:", sorted(sample["spatial"]))


def test_flip_mirrors_the_crop_and_swaps_left_and_right_labels():
    # wide enough in x for the whole brain, so the crop is centred on the midline
    gen = _generator([SYNTHSEG / "training_seg_01.nii.gz"], tables=SYNTHSEG, crop=[176, 32, 32],
                     channels=[{"contrast": "uniform"}],
                     target={"contrast": "t1", "classes": "generation_classes_contrast_specific"},
                     spatial={**STILL, "flip": True})
    params = gen.spatial.sample(gen.maps[0], gen.boxes[0], sample_generator(0, 0))
    straight = gen.sample_labels(0, {**params, "flip": False})
    flipped = gen.sample_labels(0, {**params, "flip": True})
    swap = swap_table(int(straight.max()))
    assert torch.equal(flipped, swap[torch.flip(straight, dims=(0,))])
    left, right = 2, 41  # cerebral white matter
    assert int((flipped == left).sum()) == int((straight == right).sum()) > 0
    assert int((flipped == right).sum()) == int((straight == left).sum()) > 0
    # mirrored: the right hemisphere moved to the left (RAS: +x is right) and is renamed left, so the
    # flipped crop is anatomically consistent, left labels on the left
    x = torch.arange(straight.shape[0]).view(-1, 1, 1).expand_as(straight).double()
    last = straight.shape[0] - 1
    assert float(x[flipped == left].mean()) == pytest.approx(last - float(x[straight == right].mean()))
    assert float(x[straight == left].mean()) < last / 2 and float(x[flipped == left].mean()) < last / 2


def test_class_means_are_within_sampling_error():
    table = ClassTable.from_folder(SYNTHSR)
    mixture = GaussianMixture(table, "t2", SYNTHSR)
    rng = sample_generator(3, 0)
    params = mixture.sample(rng)
    classes = torch.arange(table.n_classes).repeat_interleave(20_000).view(table.n_classes, 100, 200)
    image = mixture.apply(classes, params, rng)
    for k in range(1, table.n_classes):
        values = image[k].double()
        mean, std = params["means"][k], params["stds"][k]
        if mean > 4 * std:  # the image is clamped at 0, which biases classes near 0
            assert abs(float(values.mean()) - mean) < 5 * std / np.sqrt(values.numel()) + 1e-6
            assert abs(float(values.std()) - std) < 0.05 * std + 1e-6
    means = np.array([mixture.sample(sample_generator(s, 0))["means"] for s in range(400)])
    prior = np.load(SYNTHSR / "prior_means_t2.npy")
    # the drawn class means follow the prior N(row 0, row 1)
    assert np.allclose(means.mean(0)[1:], prior[0][1:], atol=4 * prior[1][1:].max() / np.sqrt(400))


def test_bias_field_is_smooth_positive_and_multiplicative():
    bias = BiasField(ChannelConfig(bias_std=0.5, bias_spacing_mm=40))
    shape = (96, 96, 96)
    params = bias.sample(shape, sample_generator(5, 0))
    field = bias.field(params, shape, torch.device("cpu"))
    assert float(field.min()) > 0
    log_field = torch.log(field).numpy()
    # smooth: no voxel-to-voxel step steeper than the coarse grid's steepest slope ...
    coarse = params["bias_coarse"].numpy()
    for axis in range(3):
        slope = np.abs(np.diff(coarse, axis=axis)).max() / ((shape[axis] - 1) / (coarse.shape[axis] - 1))
        assert np.abs(np.diff(log_field, axis=axis)).max() <= slope + 1e-5
    # ... and almost no energy at periods under 20 mm (half the control spacing); Hann window against the
    # edges of the non-periodic field
    window = np.hanning(shape[0])
    windowed = (log_field - log_field.mean()) * window[:, None, None] * window[None, :, None] * window[None, None, :]
    spectrum = np.abs(np.fft.fftn(windowed)) ** 2
    freqs = np.sqrt(sum(np.meshgrid(*(np.fft.fftfreq(n) ** 2 for n in shape), indexing="ij")))
    high = spectrum[freqs > 1 / 20].sum() / spectrum.sum()
    print(f"bias field: energy at periods < 20 mm = {high:.2e}")
    assert high < 0.01
    image = torch.full(shape, 2.0)
    assert torch.allclose(bias.apply(image, params), 2.0 * field)


def test_five_mm_axial_loses_through_plane_high_frequencies():
    rng = sample_generator(7, 0)
    image = torch.rand(64, 64, 80, generator=rng)
    acquisition = Acquisition(ChannelConfig(spacing=(1.0, 1.0, 5.0), noise_std=0.0))
    params = acquisition.sample(tuple(image.shape), rng)
    out = acquisition.apply(image, params, rng).numpy()

    def high_fraction(volume: np.ndarray, axis: int) -> float:
        power = (np.abs(np.fft.rfft(volume - volume.mean(axis=axis, keepdims=True), axis=axis)) ** 2)
        freqs = np.fft.rfftfreq(volume.shape[axis])
        power = np.moveaxis(power, axis, -1)
        return float(power[..., freqs > 1 / 10].sum() / power.sum())  # above the 5 mm Nyquist frequency

    through, in_plane = high_fraction(out, 2), high_fraction(out, 0)
    print(f"5 mm axial: energy above 0.1 cycles/mm: through-plane {through:.4f}, in-plane {in_plane:.4f}")
    assert params["spacing_mm"] == [1.0, 1.0, 5.0] and params["thickness_mm"] == [1.0, 1.0, 5.0]
    assert through < in_plane / 10


def test_random_acquisition_stays_within_its_bounds():
    acquisition = Acquisition(ChannelConfig(max_spacing=9.0, max_spacing_iso=4.0))
    for seed in range(40):
        p = acquisition.sample((32, 32, 32), sample_generator(seed, 0))
        assert all(1.0 <= s <= 9.0 for s in p["spacing_mm"])
        assert all(1.0 <= t <= s + 1e-9 for t, s in zip(p["thickness_mm"], p["spacing_mm"]))


def test_real_target_is_resampled_with_the_labels(tmp_path):
    source = nib.load(str(SYNTHSR / "brain1_labels.nii.gz"))
    labels = np.asarray(source.dataobj)
    white = (labels == 2).astype(np.float32) * 300.0 + (labels > 0) * 50.0
    nib.save(nib.Nifti1Image(white, source.affine), str(tmp_path / "t1.nii.gz"))
    gen = _generator([SYNTHSR / "brain1_labels.nii.gz"], target={"images": [str(tmp_path / "t1.nii.gz")]})
    batch = gen.sample(1, seed=2)
    target, crop = batch.target[0, 0], batch.labels[0, 0]
    inside, outside = target[crop == 2], target[(crop != 2) & (crop > 0)]
    assert float(inside.median()) > 2 * float(outside.median())
    # the 99th percentile (white matter here) lands on the prior's white-matter mean
    prior_white = np.load(SYNTHSR / "prior_means_t1_hr.npy")[0][1]
    assert float(inside.median()) == pytest.approx(prior_white * TARGET_SCALE, rel=0.02)


def test_residual_target_is_the_target_minus_the_channel():
    maps = [SYNTHSR / "brain3_labels.nii.gz"]
    plain = _generator(maps).sample(1, seed=4)
    residual = _generator(maps, target={"residual_channel": 0}).sample(1, seed=4)
    assert torch.allclose(residual.target + residual.inputs[:, :1] * 255 * TARGET_SCALE, plain.target, atol=1e-6)


def test_config_round_trips_and_rejects_unknown_options():
    config = GeneratorConfig.from_dict({"crop": [64, 64, 32], "channels": [
        {"suffix": "T2w", "contrast": "t2", "spacing": [1, 1, 5]},
        {"suffix": "FLAIR", "spacing": [1, 5, 1], "registration_error_mm": 2}]})
    assert GeneratorConfig.from_dict(config.as_dict()) == config
    assert config.suffixes == ("T2w", "FLAIR")
    with pytest.raises(ValueError, match="unknown option.*spacng"):
        GeneratorConfig.from_dict({"channels": [{"spacng": [1, 1, 5]}]})
    with pytest.raises(ValueError, match="residual_channel 3"):
        GeneratorConfig.from_dict({"target": {"residual_channel": 3}})


def test_crop_padding_lets_crops_reach_past_the_labels():
    maps = [SYNTHSR / "brain1_labels.nii.gz"]
    # a crop about the brain's size stays on it without padding and reaches the air with 40 voxels of it
    inside = _generator(maps, crop=112, spatial=STILL)
    padded = _generator(maps, crop=112, crop_padding=40, spatial=STILL)
    background = [[float((g.sample(1, seed=s).labels == 0).float().mean()) for s in range(6)] for g in (inside, padded)]
    assert max(background[1]) > max(background[0]) + 0.1
    with pytest.raises(ValueError, match="crop_padding"):
        GeneratorConfig.from_dict({"crop_padding": -1})


def test_reference_target_handling_normalises_gamma_augments_and_blurs():
    maps = [SYNTHSR / "brain1_labels.nii.gz"]
    plain = _generator(maps, target={"contrast": "t1_hr"})
    clipped = _generator(maps, target={"contrast": "t1_hr", "clip": 100.0})
    normalised = _generator(maps, target={"contrast": "t1_hr", "normalise": True})
    gamma = _generator(maps, target={"contrast": "t1_hr", "normalise": True, "gamma_std": 0.5})
    blurred = _generator(maps, target={"contrast": "t1_hr", "normalise": True, "blur_sigma": 0.5})
    t = {name: g.sample(1, seed=3).target for name, g in
         (("plain", plain), ("clipped", clipped), ("normalised", normalised), ("gamma", gamma), ("blurred", blurred))}
    assert float(t["clipped"].max()) == pytest.approx(100.0 * TARGET_SCALE)
    # min-max over the crop, 1 -> 255 on the T1 scale: the brightest voxel is the brightest output (0.5)
    assert float(t["normalised"].min()) == pytest.approx(0.0, abs=1e-6)
    assert float(t["normalised"].max()) == pytest.approx(255.0 * TARGET_SCALE)
    assert float(t["plain"].max()) != pytest.approx(255.0 * TARGET_SCALE)
    drawn = gamma.sample(1, seed=3).params[0]["target"]["gamma"]
    assert drawn != 1.0
    expected = (t["normalised"] / (255.0 * TARGET_SCALE)) ** drawn * (255.0 * TARGET_SCALE)
    assert torch.allclose(t["gamma"], expected, atol=1e-5)
    # the blur smooths the per-voxel texture: neighbouring voxels differ less
    def roughness(x):
        return float((x[..., 1:] - x[..., :-1]).abs().mean())
    assert roughness(t["blurred"]) < 0.7 * roughness(t["normalised"])
    with pytest.raises(ValueError, match="normalise"):
        GeneratorConfig.from_dict({"target": {"gamma_std": 0.5}})


def test_head_maps_run_with_synthsegs_tables():
    """SynthSeg's head maps: extra-cerebral labels get their classes; the T1 prior needs the contrast-specific
    class table (25 classes); crops see skull and background."""
    generator = _generator([SYNTHSEG / "training_seg_01.nii.gz"], tables=SYNTHSEG, crop=64,
                           channels=[{"contrast": "uniform", "classes": "generation_classes"}],
                           target={"contrast": "t1", "classes": "generation_classes_contrast_specific"})
    batch = generator.sample(1, seed=0)
    labels = set(torch.unique(batch.labels).tolist())
    assert labels & {502, 506, 507, 508, 509, 511, 512, 514, 515, 516, 530}
    assert torch.isfinite(batch.target).all() and float(batch.target.max()) > 0
    with pytest.raises(ValueError, match="contrast_specific"):
        _generator([SYNTHSEG / "training_seg_01.nii.gz"], tables=SYNTHSEG, target={"contrast": "t1"},
                   channels=[{"contrast": "uniform"}])
