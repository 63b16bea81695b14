"""The training-pair generator: label maps in, synthetic scans and a 1 mm T1 target out."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch

from .acquisition import Acquisition, BiasField, GammaNormalisation, blur, min_max
from .config import GeneratorConfig, TargetConfig
from .contrast import GaussianMixture
from .labels import ClassTable, LabelMap, load_label_map, swap_table
from .random import normal, sample_generator, uniform
from .spatial import RandomSpatialTransform, brain_box, rigid_perturbation, sample_world

#: The inference writes uint8 = clip(255 * output, 0, 128) * 2, so a target on the 0-255 T1 scale is
#: divided by 510 to be in network-output units.
TARGET_SCALE = 1.0 / 510.0
#: Cerebral white matter: a real target image's 99th intensity percentile (white matter in a T1) is mapped to
#: the target prior's mean for this label, so real and synthetic targets share one scale.
WHITE_MATTER = 2


@dataclass
class SynthBatch:
    inputs: torch.Tensor  # (N, C, X, Y, Z) float32, each channel min-max normalised to [0, 1]
    target: torch.Tensor  # (N, 1, X, Y, Z) float32, network output units (T1 / 510), minus the residual channel
    labels: torch.Tensor  # (N, 1, X, Y, Z) int64, the deformed (and flipped) label crop
    params: list[dict[str, Any]] = field(default_factory=list)  # per sample, every drawn parameter
    seed: int = 0

    def describe(self) -> dict[str, Any]:
        """Every sampled parameter of the batch as plain Python values (tensors summarised)."""
        return {"seed": self.seed, "samples": [_plain(p) for p in self.params]}


class SynthGenerator:
    """Samples (inputs, target) pairs from label maps as SynthSR does; a batch is a function of its seed."""

    def __init__(self, label_maps: Sequence[str | os.PathLike[str]], config: GeneratorConfig,
                 device: str | torch.device = "cpu") -> None:
        if not label_maps:
            raise ValueError("the generator needs at least one label map")
        self.config = config
        self.device = torch.device(device)
        self.maps: list[LabelMap] = [load_label_map(p) for p in label_maps]
        self.boxes = [brain_box(m) for m in self.maps]
        tables = Path(config.tables)
        max_label = int(max(m.labels.max() for m in self.maps))
        self.swap = swap_table(max_label).to(self.device)
        self.spatial = RandomSpatialTransform(config.spatial, config.crop, config.crop_padding)
        self.mixtures = []
        self.class_luts = []
        for part in (*config.channels, config.target):
            table = ClassTable.from_folder(tables, part.classes)
            self.mixtures.append(GaussianMixture(table, part.contrast, tables,
                                                 *((part.uniform_means, part.uniform_stds)
                                                   if hasattr(part, "uniform_means") else ())))
            self.class_luts.append(table.lookup(max_label).to(self.device))
        self.target_mixture, self.target_lut = self.mixtures.pop(), self.class_luts.pop()
        self.target_images = [_load_target(p) for p in config.target.images]
        if self.target_images and len(self.target_images) != len(self.maps):
            raise ValueError(f"generator.target.images lists {len(self.target_images)} images for "
                             f"{len(self.maps)} label maps; give one per label map, in the same order")

    @property
    def label_hashes(self) -> dict[str, str]:
        return {m.path.name: m.sha256 for m in self.maps}

    def sample(self, batch_size: int, seed: int) -> SynthBatch:
        samples = [self._one(sample_generator(seed, i)) for i in range(batch_size)]
        return SynthBatch(inputs=torch.stack([s[0] for s in samples]), target=torch.stack([s[1] for s in samples]),
                          labels=torch.stack([s[2] for s in samples]), params=[s[3] for s in samples], seed=seed)

    def _one(self, rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]:
        cfg = self.config
        index = int(torch.randint(0, len(self.maps), (1,), generator=rng)[0])
        label_map = self.maps[index]
        spatial = self.spatial.sample(label_map, self.boxes[index], rng)
        world = self.spatial.world_coordinates(spatial, self.device)
        labels = self._labels_at(label_map, world, spatial["flip"])
        params: dict[str, Any] = {"label_map": label_map.path.name, "spatial": spatial, "channels": []}
        channels = []
        for c, (channel, mixture, lut) in enumerate(zip(cfg.channels, self.mixtures, self.class_luts)):
            channel_labels = labels
            if c > 0 and (channel.registration_error_deg > 0 or channel.registration_error_mm > 0):
                angles = uniform(rng, -channel.registration_error_deg, channel.registration_error_deg, 3)
                shift = uniform(rng, -channel.registration_error_mm, channel.registration_error_mm, 3)
                moved = rigid_perturbation(world, spatial["centre_mm"], angles, shift)
                channel_labels = self._labels_at(label_map, moved, spatial["flip"])
                params_reg = {"registration_error_deg": angles.tolist(), "registration_error_mm": shift.tolist()}
            else:
                params_reg = {}
            gmm = mixture.sample(rng)
            image = mixture.apply(lut[channel_labels], gmm, rng)
            bias, gamma, acquisition = BiasField(channel), GammaNormalisation(channel), Acquisition(channel)
            bias_params = bias.sample(tuple(image.shape), rng)
            gamma_params = gamma.sample(rng)
            acq_params = acquisition.sample(tuple(image.shape), rng)
            image = gamma.apply(bias.apply(image, bias_params), gamma_params)
            channels.append(acquisition.apply(image, acq_params, rng))
            params["channels"].append({"suffix": channel.suffix, "gmm": gmm, **bias_params, **gamma_params,
                                       **acq_params, **params_reg})
        inputs = torch.stack(channels)
        target, target_params = self._target(index, labels, world, spatial["flip"], rng)
        if cfg.target.residual_channel is not None:
            target = target - inputs[cfg.target.residual_channel] * TARGET_SCALE * 255.0
        params["target"] = target_params
        return inputs.float(), target[None].float(), labels[None], params

    def sample_labels(self, index: int, spatial: dict[str, Any]) -> torch.Tensor:
        """Label map ``index`` under the spatial parameters ``spatial`` (from ``self.spatial.sample``)."""
        world = self.spatial.world_coordinates(spatial, self.device)
        return self._labels_at(self.maps[index], world, spatial["flip"])

    def _labels_at(self, label_map: LabelMap, world: torch.Tensor, flip: bool) -> torch.Tensor:
        labels = sample_world(label_map.labels.to(self.device), label_map.affine, world, mode="nearest")
        labels = labels.round().long()
        if flip:
            labels = self.swap[torch.flip(labels, dims=(0,))]
        return labels

    def _target(self, index: int, labels: torch.Tensor, world: torch.Tensor, flip: bool,
                rng: torch.Generator) -> tuple[torch.Tensor, dict[str, Any]]:
        if not self.target_images:
            gmm = self.target_mixture.sample(rng)
            image = self.target_mixture.apply(self.target_lut[labels], gmm, rng, texture=self.config.target.texture)
            image, handling = target_handling(image, self.config.target, rng)
            return image * TARGET_SCALE, {"gmm": gmm, **handling}
        data, affine, scale = self.target_images[index]
        image = sample_world(data.to(self.device), affine, world, mode="bilinear")
        if flip:
            image = torch.flip(image, dims=(0,))
        prior = self.target_mixture.prior_means
        white = float(prior[0][int(self.target_lut[WHITE_MATTER])]) if prior is not None else 255.0
        return image * (white / scale) * TARGET_SCALE, {"image": str(self.config.target.images[index])}


def target_handling(image: torch.Tensor, config: TargetConfig,
                    rng: torch.Generator) -> tuple[torch.Tensor, dict[str, Any]]:
    """The synthetic target on the 0-255 T1 scale after the reference's clip, min-max, gamma and blur.

    Normalised targets span 0-255 (1 -> 255): the inference writes ``clip(255 * output, 0, 128) * 2``, so the
    normalised maximum is the brightest value an output can take.
    """
    params: dict[str, Any] = {}
    if config.clip is not None:
        image = image.clamp(max=float(config.clip))
    if config.normalise:
        image = min_max(image)
        if config.gamma_std > 0:
            gamma = float(torch.exp(normal(rng, (1,)) * config.gamma_std)[0])
            image = image.pow(gamma)
            params["gamma"] = gamma
        image = image * 255.0
    if config.blur_sigma > 0:
        image = blur(image, [float(config.blur_sigma)] * 3)
    return image, params


def _load_target(path: str | os.PathLike[str]) -> tuple[torch.Tensor, np.ndarray, float]:
    """A real target image in RAS order, and its intensity scale (99th percentile inside the head)."""
    image = nib.as_closest_canonical(nib.load(str(path)))
    data = np.asarray(image.dataobj, dtype=np.float32)
    if data.ndim != 3:
        raise ValueError(f"{path}: a target image must be 3-D, got shape {data.shape}")
    positive = data[data > 0]
    if positive.size == 0:
        raise ValueError(f"{path}: target image has no positive intensity")
    return torch.from_numpy(np.ascontiguousarray(data)), np.asarray(image.affine, float), float(
        np.percentile(positive, 99))


def _plain(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return {"shape": list(value.shape), "mean": float(value.float().mean()), "std": float(value.float().std())} \
            if value.numel() > 16 else value.tolist()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
