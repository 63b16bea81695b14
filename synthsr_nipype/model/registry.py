"""Named SynthSR models: where to look for them and what they must hash to."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from ..errors import ModelNotFoundError
from .card import ModelCard, card_suffixes
from .upstream import Upstream


@dataclass(frozen=True)
class ModelNotes:
    """What a user must be told about a model wherever it is used, until its results justify silence.

    ``note`` is one line (the console, the sidecars' ``ModelNotes``, the reports' banners); ``methods`` is the
    paragraph logs/CITATION.md gives instead of citing the published models' validation as if it applied.
    """

    note: str
    methods: str


@dataclass(frozen=True)
class RealScanResult:
    """A model's figures from benchmarks/superres_real.py (the JSON it wrote is checked against these)."""

    benchmark: str  # the JSON file under benchmarks/
    acquisition: str  # its key in the JSON's "acquisitions"
    label: str  # how the text names the acquisition
    gm_dice: float
    gm_dice_trilinear: float
    gm_error_percent: float
    gm_error_percent_trilinear: float


#: lite's measured real-scan result (docs/superres.md), and how it was trained (its card holds the details)
LITE_RESULT = RealScanResult("superres_lite.json", "axial5", "5 mm axial", 0.5988, 0.7453, 24.76, 16.47)
LITE_TRAINING = ("a 4-level, 16-feature U-Net of SynthSR's architecture trained by synthsr-nipype with "
                 "synthsr-train for 2,400 steps on two CPU cores (synthsr_nipype/train/configs/lite.yaml, about "
                 "0.5 % of SynthSR's training schedule) on synthetic scans of any contrast and resolution "
                 "generated from four of SynthSR's training label maps")


def _lite_notes(result: RealScanResult = LITE_RESULT, training: str = LITE_TRAINING) -> ModelNotes:
    worse = result.gm_dice < result.gm_dice_trilinear
    comparison = "worse than" if worse else "better than"
    figures = (f"grey-matter Dice {result.gm_dice:.2f} vs {result.gm_dice_trilinear:.2f}, grey-matter volume "
               f"error {result.gm_error_percent:+.1f} % vs {result.gm_error_percent_trilinear:+.1f} % at "
               f"{result.label}")
    note = (f"model 'lite' is a small model trained by synthsr-nipype, not a published SynthSR model; on real "
            f"scans it is {comparison} trilinear upsampling ({figures}; docs/superres.md): use it to try the "
            "pipeline, not for results")
    methods = (
        "Each anatomical scan was converted into a synthetic 1 mm isotropic T1-weighted image with the model "
        f"`lite`: {training}, following SynthSR's generative training [@synthsr1; @synthsr2]. `lite` is not one "
        "of the published SynthSR models, and their validation does not apply to it. Measured on a real 0.8 mm "
        f"T1-weighted scan degraded to {result.label} slices (benchmarks/superres_real.py of synthsr-nipype), "
        f"its output was {comparison} trilinear upsampling of the thick slices ({figures}, ANTs tissue "
        "segmentation against the real scan's). Results obtained with `lite` should not be reported as "
        "SynthSR results.")
    return ModelNotes(note=note, methods=methods)


@dataclass(frozen=True)
class ModelInfo:
    """A model card: where the weights are, what they hash to, and what they take as input.

    ``channels`` names the BIDS suffix of each input channel, in order, for models that need
    specific contrasts; it stays empty for one-channel models that take any contrast.
    """

    name: str
    filename: str
    sha256: str | None
    size: int | None
    in_channels: int
    description: str
    #: where the publisher serves the file (see model/upstream.py); None: nothing to download
    upstream: Upstream | None = None
    bundled: bool = False  # shipped inside the package (``BUNDLED_DIR``), never fetched
    channels: tuple[str, ...] = ()
    notes: ModelNotes | None = None  # said wherever the model is used (see ModelNotes)

    @classmethod
    def annexed(cls, name: str, sha256: str, size: int, in_channels: int, description: str, *,
                filename: str | None = None) -> ModelInfo:
        """A model in FreeSurfer's git-annex remote (fetched by its SHA-256 and size); its file is
        ``<name>.h5`` unless named.

        >>> ModelInfo.annexed("synthseg_2.0", "f1" * 32, 53_079_152, 1, "SynthSeg 2.0").filename
        'synthseg_2.0.h5'
        """
        return cls(name, filename or f"{name}.h5", sha256, size, in_channels, description,
                   upstream=Upstream("freesurfer-annex"))

    def __post_init__(self) -> None:
        if self.channels and len(self.channels) != self.in_channels:
            raise ValueError(f"model {self.name}: {self.in_channels} input channels but "
                             f"{len(self.channels)} channel suffixes {self.channels}")


MODELS: dict[str, ModelInfo] = {
    "v2": ModelInfo.annexed("v2", "a472f776e7b33b5ea6e10c801f55fee488f1477a208b3e6998dc1aec1d9c5f8b",
                            106_163_752, 1, "general model, January 2023 (mri_synthsr default)",
                            filename="synthsr_v20_230130.h5"),
    "lowfield": ModelInfo.annexed("lowfield", "a7c5ea91c94fe31f3c716252caae0d181629201bd884dc59af88ddfd75ed4b84",
                                  106_163_752, 1, "low-field scans (e.g. Hyperfine Swoop), January 2023",
                                  filename="synthsr_lowfield_v20_230130.h5"),
    "v1": ModelInfo("v1", "synthsr_v10_210712.h5",
                    "2fd59e96196388360eba95254fb6dfc9eb9eb8638018b590575e47e0a387f255", 53_075_984, 1,
                    "version 1 general model, July 2021",
                    upstream=Upstream("freesurfer-tree", "mri_synthsr/synthsr_v10_210712.h5")),
    "hyperfine": ModelInfo("hyperfine", "synthsr_v10_210712_hyperfine.h5", None, None, 2,
                           "Hyperfine T1 + T2 model (mri_synthsr_hyperfine), July 2021",
                           upstream=Upstream("freesurfer-tree", "mri_synthsr/synthsr_v10_210712_hyperfine.h5"),
                           channels=("T1w", "T2w")),
    "lite": ModelInfo("lite", "lite.safetensors", None, None, 1,
                      "small general model trained by this package (synthsr-train, "
                      "synthsr_nipype/train/configs/lite.yaml); ships with the package", bundled=True,
                      notes=_lite_notes()),
}
#: SynthSeg's weights (mri_synthseg; the synthsr_nipype.segmentation port), in FreeSurfer's git-annex remote
#: like v2/lowfield, each file named after its model.  Sizes and SHA-256 are the annex keys of FreeSurfer's
#: tree (shared fixture README, 1.1).
SYNTHSEG_MODELS: dict[str, ModelInfo] = {info.name: info for info in (
    ModelInfo.annexed("synthseg_2.0", "f190bfd742f450ef3ca2c9df9ed4d2e0232b3a74471da5e51b7770bacdf80c3e",
                      53_079_152, 1, "SynthSeg 2.0 segmentation U-Net (mri_synthseg default)"),
    ModelInfo.annexed("synthseg_robust_2.0", "7bc30bf5c3d204f20c4a6cb5a283aedbcab6af1de927cda783f59b67d19cb01c",
                      214_606_800, 1, "SynthSeg-robust 2.0: U-Net, denoiser and second U-Net (mri_synthseg --robust)"),
    ModelInfo.annexed("synthseg_parc_2.0", "83bb1de76fb6f173c6dacacd433f81209fc6abb1dbc179a930ec06ecabbeb684",
                      53_090_840, 3, "SynthSeg 2.0 cortical parcellation U-Net (mri_synthseg --parc)"),
    ModelInfo.annexed("synthseg_qc_2.0", "fb92e37daa0842bdd8a03bc06a3b36b0d38810e31c714659cedd09119c0abfb7",
                      49_878_004, 9, "SynthSeg 2.0 automated QC regressor (mri_synthseg --qc)"),
    ModelInfo.annexed("synthseg_robust_1.0", "ed7c45b9fc48983a8218bff542ec2edf5ada3e28d261cec29db1d9f8d95ac8eb",
                      214_607_552, 1, "SynthSeg-robust 1.0 (older robust chain; mri_synthseg does not load it)"),
)}
MODELS.update(SYNTHSEG_MODELS)
#: what mri_synthseg --v1 loads; not in FreeSurfer's stored tree (no published hash): found by file name only
SYNTHSEG_V1_FILENAME = "synthseg_1.0.h5"
DEFAULT_MODEL = "v2"
#: Folder of the models that ship inside the package.
BUNDLED_DIR = Path(__file__).resolve().parent / "weights"
#: Channel order assumed for a multi-channel model given as a bare file (the Hyperfine layout).
DEFAULT_CHANNEL_SUFFIXES: tuple[str, ...] = ("T1w", "T2w")


def user_models_dir() -> Path:
    return Path(platformdirs.user_cache_dir("synthsr-nipype")) / "models"


def search_dirs() -> list[Path]:
    """Folders searched for a named model, in order."""
    dirs = []
    if os.environ.get("SYNTHSR_MODELS_DIR"):
        dirs.append(Path(os.environ["SYNTHSR_MODELS_DIR"]))
    if os.environ.get("FREESURFER_HOME"):
        dirs.append(Path(os.environ["FREESURFER_HOME"]) / "models")
    dirs.append(user_models_dir())
    return dirs


def model_argument(model: str | os.PathLike[str]) -> str:
    """A model as a node may take it: a registry name unchanged, a path made absolute (a node runs
    in its own work folder, where a path relative to the user's folder names nothing)."""
    text = os.fspath(model)
    if text in MODELS:
        return text
    return os.path.abspath(os.path.expanduser(text))


def resolve_model_path(model: str | os.PathLike[str]) -> tuple[Path, ModelInfo | None]:
    """Return the weight file for a registry name or an explicit path, and its registry entry if named."""
    text = os.fspath(model)
    if text in MODELS:
        info = MODELS[text]
        looked = []
        for folder in [BUNDLED_DIR] if info.bundled else search_dirs():
            candidate = folder / info.filename
            looked.append(str(candidate))
            if candidate.is_file():
                return candidate, info
        if info.bundled:
            raise ModelNotFoundError(f"model '{text}' should ship with the package but {looked[0]} is missing; "
                                     "reinstall synthsr-nipype or pass --model PATH")
        raise ModelNotFoundError(
            f"model '{text}' ({info.filename}) not found; looked in: {', '.join(looked)}. "
            f"Get it with 'synthsr-models fetch {text}', or set $SYNTHSR_MODELS_DIR, or pass --model PATH")
    path = Path(text).expanduser()
    if path.is_file():
        known = next((m for m in MODELS.values() if m.filename == path.name), None)
        return path, known
    if path.exists():
        raise ModelNotFoundError(f"{path}: model path is not a file")
    names = ", ".join(MODELS)
    raise ModelNotFoundError(f"{path}: model file does not exist (known model names: {names})")


def model_notes(model: str | os.PathLike[str]) -> ModelNotes | None:
    """The notes of a registry model (by name, as :func:`model_label` gives it), else ``None``."""
    info = MODELS.get(model_label(model))
    return info.notes if info is not None else None


def model_label(model: str | os.PathLike[str]) -> str:
    """How logs, sidecars and the group tables name a model: a registry name as it is, a weight
    file by its file name (absolute paths are not portable)."""
    text = os.fspath(model)
    return text if text in MODELS else Path(text).name


def channel_suffixes(model: str | os.PathLike[str] | ModelInfo | ModelCard,
                     in_channels: int | None = None) -> tuple[str, ...] | None:
    """BIDS suffix of each input channel of ``model``; ``None`` for one-channel (any contrast) models.

    A model card says it: a registry entry (:class:`ModelInfo`, or its name) or the card of a
    model trained by this package (:class:`~synthsr_nipype.model.card.ModelCard`, or the path of its
    .safetensors file). For a bare
    weight file, ``in_channels`` (from the loaded architecture) decides, in the Hyperfine order.
    """
    if isinstance(model, ModelCard):
        named = model.suffixes
    elif isinstance(model, ModelInfo):
        named = model.channels
    elif os.fspath(model) in MODELS:
        named = MODELS[os.fspath(model)].channels
    else:  # a file: a trained model's card names its channels (no need to load the weights)
        named = card_suffixes(model) or ()
    if named:
        return named if len(named) > 1 else None
    if in_channels is not None and in_channels > 1:
        if in_channels > len(DEFAULT_CHANNEL_SUFFIXES):
            name = model.name if isinstance(model, ModelInfo) else model_label(os.fspath(model))
            raise ValueError(f"model {name} has {in_channels} input channels; no model card names them")
        return DEFAULT_CHANNEL_SUFFIXES[:in_channels]
    return None
