"""Inference as pure functions; :func:`run` is the one public entry point.

Names resolve on first use (`lazy_loader <https://scientific-python.org/specs/spec-0001/>`_), so
``inference.checks`` and ``inference.memory`` load without torch.
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(__name__, submod_attrs={
    "io": ["InputVolume", "load_volume"],
    "pipeline": ["Prepared", "Synthesis", "combine_passes", "finish_general", "finish_hyperfine", "native_image",
                 "output_image", "pick_device", "predict", "prepare_channels", "prepare_general",
                 "prepare_hyperfine", "run", "synthesise", "to_uint8"],
})
