"""Model side: the torch U-Net, the Keras-h5 loader, the converted-weight cache and the registry.

Names resolve on first use (`lazy_loader <https://scientific-python.org/specs/spec-0001/>`_):
``model.registry`` and ``model.spec`` load without torch, h5py or safetensors.
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(__name__, submod_attrs={
    "loader": ["SynthSRModel", "load_model"],
    "unet": ["UNet"],
    "spec": ["UNetSpec", "published_spec"],
    "card": ["ModelCard"],
    "registry": ["MODELS", "DEFAULT_MODEL", "ModelInfo"],
})
