"""User-facing APIs: interactive prediction, automatic mask generation, SA-1B files."""

from .convert import ConversionReport, convert_checkpoint
from .mask_generator import AutomaticMaskGenerator
from .model_zoo import get_model, list_models
from .predictor import SAMPredictor

__all__ = [
    'SAMPredictor',
    'AutomaticMaskGenerator',
    'get_model',
    'list_models',
    'convert_checkpoint',
    'ConversionReport',
]
