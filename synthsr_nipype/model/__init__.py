"""Model side: the torch U-Net, the Keras-h5 loader, the converted-weight cache and the registry.

Names resolve on first use (:mod:`synthsr_nipype.lazy`): ``model.registry`` and ``model.spec``
load without torch, h5py or safetensors.
"""

from ..lazy import lazy_exports

_EXPORTS = {
    "SynthSRModel": "loader",
    "load_model": "loader",
    "UNet": "unet",
    "UNetSpec": "spec",
    "published_spec": "spec",
    "ModelCard": "card",
    "MODELS": "registry",
    "DEFAULT_MODEL": "registry",
    "ModelInfo": "registry",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
