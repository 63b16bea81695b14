"""Label maps and the per-label lookup tables of the generator.

A label map is read once, reoriented to RAS (so that axis 0 is left-right for every map, as the inference
aligns every scan to RAS before the network) and kept as float32 labels, which ``grid_sample`` can resample
nearest-neighbour exactly (FreeSurfer labels are small integers).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

#: FreeSurfer's left/right label pairs (FreeSurferColorLUT), as SynthSeg's lateralised tables use them.
LEFT_RIGHT_PAIRS: dict[int, int] = {
    2: 41, 3: 42, 4: 43, 5: 44, 7: 46, 8: 47, 10: 49, 11: 50, 12: 51, 13: 52, 17: 53, 18: 54, 19: 55,
    20: 56, 25: 57, 26: 58, 27: 59, 28: 60, 29: 61, 30: 62, 31: 63, 136: 163, 137: 164,
}


def swap_table(max_label: int) -> torch.Tensor:
    """``table[label]`` is the label's mirror twin (itself for midline labels): applied after a L-R flip."""
    table = torch.arange(max_label + 1, dtype=torch.long)
    for left, right in LEFT_RIGHT_PAIRS.items():
        if left <= max_label and right <= max_label:
            table[left], table[right] = right, left
    return table


@dataclass(frozen=True)
class LabelMap:
    """One training label map in RAS voxel order."""

    path: Path
    labels: torch.Tensor  # (X, Y, Z) float32 label values
    affine: np.ndarray  # voxel -> mm (RAS)
    sha256: str

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.labels.shape)  # type: ignore[return-value]


def load_label_map(path: str | os.PathLike[str]) -> LabelMap:
    """Read an integer label map, reoriented to the closest canonical (RAS) voxel order."""
    path = Path(path)
    image = nib.as_closest_canonical(nib.load(str(path)))
    data = np.asarray(image.dataobj)
    if data.ndim != 3:
        raise ValueError(f"{path}: a label map must be 3-D, got shape {data.shape}")
    rounded = np.rint(data)
    if not np.array_equal(rounded, data) or rounded.min() < 0:
        raise ValueError(f"{path}: a label map must hold non-negative integer labels")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    labels = torch.from_numpy(np.ascontiguousarray(rounded, dtype=np.float32))
    return LabelMap(path=path, labels=labels, affine=np.asarray(image.affine, dtype=np.float64), sha256=digest)


@dataclass(frozen=True)
class ClassTable:
    """SynthSR's ``generation_labels.npy`` / ``generation_classes.npy``: which intensity class each label gets.

    Labels missing from the table take the class of their left/right twin when the twin is listed (SynthSR's
    own maps are not lateralised), else the background class.
    """

    labels: tuple[int, ...]
    classes: tuple[int, ...]

    @classmethod
    def from_folder(cls, folder: str | os.PathLike[str], classes_name: str = "generation_classes") -> "ClassTable":
        folder = Path(folder)
        for name in ("generation_labels", classes_name):
            if not (folder / f"{name}.npy").is_file():
                raise FileNotFoundError(f"{folder / name}.npy: label table not found")
        labels = np.load(folder / "generation_labels.npy").astype(int).ravel()
        classes = np.load(folder / f"{classes_name}.npy").astype(int).ravel()
        if labels.shape != classes.shape:
            raise ValueError(f"{folder}: generation_labels and {classes_name} differ in length")
        return cls(tuple(int(v) for v in labels), tuple(int(v) for v in classes))

    @property
    def n_classes(self) -> int:
        return max(self.classes) + 1

    def lookup(self, max_label: int) -> torch.Tensor:
        """``lut[label]`` = intensity class, for every label value up to ``max_label``."""
        background = self.classes[self.labels.index(0)] if 0 in self.labels else 0
        lut = torch.full((max_label + 1,), background, dtype=torch.long)
        known = dict(zip(self.labels, self.classes))
        twins = {**LEFT_RIGHT_PAIRS, **{r: left for left, r in LEFT_RIGHT_PAIRS.items()}}
        for value in range(max_label + 1):
            if value in known:
                lut[value] = known[value]
            elif twins.get(value) in known:
                lut[value] = known[twins[value]]
        return lut
