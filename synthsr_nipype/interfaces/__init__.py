"""Nipype interfaces: thin wrappers that validate inputs, call one tested function, name outputs."""

from .bids import BIDSPlan
from .derivatives import DerivativesSink
from .fusion import RigidFusion
from .synthsr import SynthSR

__all__ = ["BIDSPlan", "DerivativesSink", "RigidFusion", "SynthSR"]
