"""SynthSR in PyTorch with Nipype interfaces, workflows and a BIDS-App."""

__version__ = "0.1.0"

CODE_URL = "https://github.com/synthsr-nipype/synthsr-nipype"
