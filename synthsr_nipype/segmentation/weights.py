"""Finding and loading SynthSeg's weight files.

A folder given explicitly (``models_dir``, ``--models-dir``) is trusted as given: its files are used whatever
they hash to (the fixture sets ship random weights under the published names).  Otherwise the registry's
names are looked up like every model of the package: $SYNTHSR_MODELS_DIR, $FREESURFER_HOME/models, the user
cache (``synthsr-models fetch synthseg_2.0`` puts them there).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..errors import ModelError, ModelNotFoundError
from ..model.registry import MODELS, SYNTHSEG_V1_FILENAME, resolve_model_path, search_dirs
from .networks import QCNet, load_layers, segmentation_unet
from .predict import Networks


def model_file(name: str, models_dir: str | os.PathLike[str] | None = None) -> Path:
    """The weight file of registry model ``name`` (or of SynthSeg 1.0, which has no published hash)."""
    filename = MODELS[name].filename if name in MODELS else SYNTHSEG_V1_FILENAME
    if models_dir is not None:
        path = Path(models_dir).expanduser() / filename
        if not path.is_file():
            raise ModelNotFoundError(f"{path}: SynthSeg model file not found in --models-dir")
        return path
    if name in MODELS:
        return resolve_model_path(name)[0]
    looked = [folder / filename for folder in search_dirs()]
    for candidate in looked:
        if candidate.is_file():
            return candidate
    raise ModelNotFoundError(f"SynthSeg 1.0 ({filename}) not found; looked in: {', '.join(map(str, looked))}; "
                             "it is not published with a hash: put the file in one of these folders or use "
                             "--models-dir DIR")


def model_names(*, robust: bool, parc: bool, qc: bool, v1: bool) -> list[str]:
    """The registry names a run loads, segmentation model first."""
    names = ["synthseg_robust_2.0" if robust else "synthseg_1.0" if v1 else "synthseg_2.0"]
    if parc:
        names.append("synthseg_parc_2.0")
    if qc:
        names.append("synthseg_qc_2.0")
    return names


def load_networks(*, robust: bool, parc: bool, qc: bool, v1: bool, device: torch.device,
                  models_dir: str | os.PathLike[str] | None = None) -> tuple[Networks, list[Path]]:
    names = model_names(robust=robust, parc=parc, qc=qc, v1=v1)
    paths = [model_file(n, models_dir) for n in names]
    layers = load_layers(paths[0])
    if robust:
        nets = Networks(unet=segmentation_unet(layers, "unet", paths[0], device),
                        l2l=segmentation_unet(layers, "l2l", paths[0], device),
                        unet2=segmentation_unet(layers, "unet2", paths[0], device))
    else:
        nets = Networks(unet=segmentation_unet(layers, "unet", paths[0], device))
    rest = iter(paths[1:])
    if parc:
        path = next(rest)
        nets.parc = segmentation_unet(load_layers(path), "unet_parc", path, device)
    if qc:
        path = next(rest)
        nets.qc = QCNet(load_layers(path), device, path)
    return nets, paths


def check_widths(nets: Networks, n_labels: int, n_groups: int, n_qc: int, paths: list[Path]) -> None:
    """Refuse weights whose channel counts do not fit the label tables (a wrong file under a right name)."""
    def spec(net: torch.nn.Module):
        return net.spec

    problems = []
    if nets.l2l is not None:
        if spec(nets.unet).out_channels != n_groups or spec(nets.l2l).in_channels != n_groups:
            problems.append(f"{paths[0]}: the robust U-Net/denoiser do not have {n_groups} groups")
        if spec(nets.unet2).out_channels != n_labels or spec(nets.unet2).in_channels != n_groups + 1:
            problems.append(f"{paths[0]}: unet2 must map {n_groups + 1} channels to {n_labels} labels")
    elif spec(nets.unet).out_channels != n_labels or spec(nets.unet).in_channels != 1:
        problems.append(f"{paths[0]}: a U-Net with {spec(nets.unet).in_channels} input and "
                        f"{spec(nets.unet).out_channels} output channels; expected 1 and {n_labels}")
    if nets.parc is not None and spec(nets.parc).in_channels != 3:
        problems.append(f"{paths[1]}: the parcellation U-Net must take 3 channels")
    if nets.qc is not None and nets.qc.in_channels != n_qc:
        problems.append(f"{paths[-1]}: the QC network must take {n_qc} channels")
    if problems:
        raise ModelError("; ".join(problems))
