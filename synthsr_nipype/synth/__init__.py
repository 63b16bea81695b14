"""Synthetic training data: SynthSR's generative model in torch (batched over samples, any device, seeded).

Label maps -> random affine x diffeomorphism, crop and L-R flip -> per channel a Gaussian mixture, bias field,
gamma and a simulated acquisition -> inputs; the same deformed labels -> a synthetic 1 mm T1 (or a real aligned
image) -> target.  :class:`SynthGenerator` is the one entry point; every step is a small class in physical units.
"""

from .acquisition import Acquisition, BiasField, GammaNormalisation, blur, min_max
from .config import ChannelConfig, GeneratorConfig, SpatialConfig, TargetConfig
from .contrast import GaussianMixture
from .generator import TARGET_SCALE, SynthBatch, SynthGenerator
from .labels import LEFT_RIGHT_PAIRS, ClassTable, LabelMap, load_label_map, swap_table
from .spatial import RandomSpatialTransform, integrate_velocity

__all__ = ["SynthGenerator", "SynthBatch", "GeneratorConfig", "ChannelConfig", "SpatialConfig", "TargetConfig",
           "TARGET_SCALE", "GaussianMixture", "BiasField", "GammaNormalisation", "Acquisition", "blur", "min_max",
           "RandomSpatialTransform", "integrate_velocity", "ClassTable", "LabelMap", "load_label_map",
           "swap_table", "LEFT_RIGHT_PAIRS"]
