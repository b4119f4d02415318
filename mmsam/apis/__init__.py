"""User-facing APIs: interactive prediction, automatic mask generation, SA-1B files."""

from .auto_annotate import auto_annotate
from .convert import ConversionReport, convert_checkpoint
from .image_io import ImageReadError, load_image
from .mask_generator import AutomaticMaskGenerator
from .model_zoo import get_model, list_models
from .predictor import SAMPredictor
from .sa1b import decode_sa1b_masks, read_sa1b, records_to_sa1b, write_sa1b

__all__ = [
    'SAMPredictor',
    'AutomaticMaskGenerator',
    'write_sa1b',
    'read_sa1b',
    'records_to_sa1b',
    'decode_sa1b_masks',
    'get_model',
    'list_models',
    'convert_checkpoint',
    'ConversionReport',
    'auto_annotate',
    'load_image',
    'ImageReadError',
]
