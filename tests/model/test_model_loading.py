"""The Keras-h5 loader (both layouts), architecture inference, the converted-weight cache, the registry."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from synthsr_nipype.errors import ModelNotFoundError
from synthsr_nipype.model import cache, keras_h5, load_model
from synthsr_nipype.model.registry import (
    ModelInfo,
    channel_suffixes,
    model_label,
    resolve_model_path,
)
from tests.model.keras_writer import random_unet_layers, write_weights_only
from tests.paths import MODELS, TINY


def test_both_layouts_give_identical_weights():
    weights_only = load_model(MODELS / "tiny_weights.h5").net.state_dict()
    full_model = load_model(MODELS / "tiny_full.h5").net.state_dict()
    assert weights_only.keys() == full_model.keys()
    for key in weights_only:
        assert torch.equal(weights_only[key], full_model[key]), key


def test_full_layout_extra_layers_are_ignored_not_loaded():
    layers = keras_h5.read_layers(MODELS / "tiny_full.h5")
    spec = keras_h5.infer_spec(layers)
    assert spec.n_levels == 5 and spec.base_features == 2 and spec.in_channels == 1
    assert not any(name.startswith("optimizer") for name in layers)


@pytest.mark.parametrize("n_levels,base,channels", [(4, 3, 1), (3, 4, 2), (6, 2, 1)])
def test_other_sizes_are_read_from_the_file(tmp_path, n_levels, base, channels):
    path = write_weights_only(tmp_path / "m.h5", random_unet_layers(n_levels, base, channels, seed=n_levels))
    model = load_model(path)
    assert model.arch["n_levels"] == n_levels
    assert model.arch["base_features"] == base
    assert model.arch["in_channels"] == channels
    side = max(32, 2 ** (n_levels - 1))
    x = torch.rand(1, channels, side, side, 2 * side)
    with torch.inference_mode():
        whole = model.net(x)
        slabbed = model.net(x, slab_rows=6)
    assert whole.shape == (1, 1, side, side, 2 * side)
    assert torch.allclose(whole, slabbed, rtol=1e-5, atol=1e-6)


def test_keras_kernel_layout_is_converted(tmp_path):
    """A single non-zero tap must land at the same spatial offset in torch as in Keras (cross-correlation)."""
    layers = random_unet_layers(2, 1, 1, seed=3)
    layers["unet_conv_downarm_0_0"]["kernel"][:] = 0
    layers["unet_conv_downarm_0_0"]["kernel"][2, 1, 0, 0, 0] = 1.0  # out[x,y,z] = in[x+1, y, z-1]
    model = load_model(write_weights_only(tmp_path / "k.h5", layers))
    conv = model.net.down[0][0]
    x = torch.zeros(1, 1, 8, 8, 8)
    x[0, 0, 4, 4, 4] = 1.0
    y = torch.nn.functional.conv3d(x, conv.weight, None, padding=1)
    assert torch.nonzero(y[0, 0]).tolist() == [[3, 4, 5]]


def test_second_load_comes_from_the_cache(monkeypatch):
    load_model(TINY)
    sha = cache.sha256_file(TINY)
    assert cache.load_cached(sha) is not None

    def refuse(*_args, **_kwargs):
        raise AssertionError("HDF5 parsed although the cache holds this file")

    monkeypatch.setattr("synthsr_nipype.model.loader.read_layers", refuse)
    model = load_model(TINY)
    assert model.sha256 == sha


def test_unreadable_cache_entry_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("SYNTHSR_CACHE_DIR", str(tmp_path / "c"))
    sha = cache.sha256_file(TINY)
    (tmp_path / "c").mkdir()
    cache._entry(sha).write_bytes(b"garbage")
    model = load_model(TINY)
    assert model.arch["base_features"] == 2
    assert cache.load_cached(sha) is not None


def test_search_order(tmp_path, monkeypatch):
    first, second = tmp_path / "a", tmp_path / "fs" / "models"
    for folder in (first, second):
        folder.mkdir(parents=True)
        (folder / "synthsr_v20_230130.h5").write_bytes(b"x")
    monkeypatch.setenv("SYNTHSR_MODELS_DIR", str(first))
    monkeypatch.setenv("FREESURFER_HOME", str(tmp_path / "fs"))
    assert resolve_model_path("v2")[0] == first / "synthsr_v20_230130.h5"
    monkeypatch.delenv("SYNTHSR_MODELS_DIR")
    assert resolve_model_path("v2")[0] == second / "synthsr_v20_230130.h5"
    assert resolve_model_path(str(TINY))[0] == TINY
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        resolve_model_path(str(tmp_path / "nope.h5"))


def test_bn_is_the_keras_inference_formula(tmp_path):
    layers = random_unet_layers(2, 2, 1, seed=5)
    model = load_model(write_weights_only(tmp_path / "bn.h5", layers))
    p = layers["unet_bn_down_0"]
    x = np.linspace(-2, 2, 7).astype(np.float32)
    keras = (x[:, None] - p["moving_mean"]) / np.sqrt(p["moving_variance"] + 1e-3) * p["gamma"] + p["beta"]
    scale = model.net.bn_down_0_scale.numpy()
    shift = model.net.bn_down_0_shift.numpy()
    np.testing.assert_allclose(x[:, None] * scale + shift, keras, rtol=1e-5, atol=1e-6)


def test_model_card_names_the_channels():
    """A card's channel suffixes decide (a registry entry or a card of a trained model); a bare
    file falls back to the Hyperfine order by its channel count; a card cannot contradict itself."""
    card = ModelInfo("mine", "mine.safetensors", None, None, 2, "", channels=("T2w", "FLAIR"))
    assert channel_suffixes(card) == ("T2w", "FLAIR")
    assert channel_suffixes("hyperfine") == ("T1w", "T2w") and channel_suffixes("v2") is None
    assert channel_suffixes("/m/custom.h5", 2) == ("T1w", "T2w")
    with pytest.raises(ValueError, match="custom.h5 has 3 input channels"):
        channel_suffixes("/m/custom.h5", 3)
    with pytest.raises(ValueError, match="2 input channels but 1 channel suffixes"):
        ModelInfo("bad", "bad.h5", None, None, 2, "", channels=("T1w",))
    assert model_label("/a/b/mine.safetensors") == "mine.safetensors" and model_label("hyperfine") == "hyperfine"
