"""Inference as pure functions; :func:`run` is the one public entry point.

Names resolve on first use (:mod:`synthsr_nipype.lazy`), so ``inference.checks`` and
``inference.memory`` load without torch.
"""

from ..lazy import lazy_exports

_EXPORTS = {
    "InputVolume": "io",
    "load_volume": "io",
    **dict.fromkeys(
        ["Prepared", "Synthesis", "combine_passes", "finish_general", "finish_hyperfine", "native_image",
         "output_image", "pick_device", "predict", "prepare_channels", "prepare_general", "prepare_hyperfine",
         "run", "synthesise", "to_uint8"],
        "pipeline",
    ),
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
