"""Intensities: a Gaussian mixture conditioned on the labels (SynthSR's generative model)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from .labels import ClassTable
from .random import normal, uniform


class GaussianMixture:
    """Per intensity class a mean and a std, then every voxel ~ N(mean[class], std[class]).

    With prior tables (``prior_means_<contrast>.npy``, ``prior_stds_<contrast>.npy``, 2 x K: row 0 and row 1
    are the mean and std of a normal prior, as in SynthSR) the class parameters are drawn from the prior; with
    ``contrast="uniform"`` they are uniform in the given ranges (any contrast).
    """

    def __init__(self, table: ClassTable, contrast: str, tables_dir: str | Path,
                 uniform_means: tuple[float, float] = (0.0, 225.0),
                 uniform_stds: tuple[float, float] = (0.0, 25.0)) -> None:
        self.table = table
        self.contrast = contrast
        self.uniform_means = uniform_means
        self.uniform_stds = uniform_stds
        self.prior_means: np.ndarray | None = None
        self.prior_stds: np.ndarray | None = None
        if contrast != "uniform":
            folder = Path(tables_dir)
            means, stds = folder / f"prior_means_{contrast}.npy", folder / f"prior_stds_{contrast}.npy"
            for path in (means, stds):
                if not path.is_file():
                    raise FileNotFoundError(f"{path}: prior table for contrast '{contrast}' not found")
            self.prior_means = np.load(means).astype(np.float64)
            self.prior_stds = np.load(stds).astype(np.float64)
            for name, prior in (("means", self.prior_means), ("stds", self.prior_stds)):
                if prior.shape != (2, table.n_classes):
                    raise ValueError(f"{folder}: prior_{name}_{contrast}.npy has shape {prior.shape}, but the "
                                     f"class table has {table.n_classes} classes (choose the matching "
                                     "'classes' table, e.g. generation_classes_contrast_specific)")

    def sample(self, rng: torch.Generator) -> dict[str, Any]:
        k = self.table.n_classes
        if self.prior_means is None:
            means = uniform(rng, *self.uniform_means, k)
            stds = uniform(rng, *self.uniform_stds, k)
        else:
            means = torch.from_numpy(self.prior_means[0]) + torch.from_numpy(self.prior_means[1]) * \
                normal(rng, (k,)).double()
            stds = torch.from_numpy(self.prior_stds[0]) + torch.from_numpy(self.prior_stds[1]) * \
                normal(rng, (k,)).double()
        return {"means": means.clamp(min=0).tolist(), "stds": stds.clamp(min=0).tolist()}

    @staticmethod
    def apply(classes: torch.Tensor, params: dict[str, Any], rng: torch.Generator | None,
              texture: bool = True) -> torch.Tensor:
        """Image (float32) of the class volume; ``texture=False`` gives the class means only."""
        means = torch.tensor(params["means"], dtype=torch.float32, device=classes.device)
        image = means[classes]
        if texture:
            stds = torch.tensor(params["stds"], dtype=torch.float32, device=classes.device)
            image += stds[classes] * normal(rng, tuple(classes.shape)).to(classes.device)
        return image.clamp_(min=0)
