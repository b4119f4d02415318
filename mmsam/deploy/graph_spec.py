"""The interface of mmsam's ONNX graphs: input/output names and metadata keys (torch-free).

The exporter writes the metadata and the runtime reads it back, so that an ONNX
file alone says how to prepare its inputs: the encoder carries the input side and
the normalization, the decoder the input side, the mask threshold and the export
options.
"""

import json
from typing import Any, Dict, Mapping

#: Input names of the decoder graph, in order (the official ``SamOnnxModel``'s).
DECODER_INPUT_NAMES = (
    'image_embeddings',
    'point_coords',
    'point_labels',
    'mask_input',
    'has_mask_input',
    'orig_im_size',
)
#: Input and output names of the encoder graph (those of the official export script).
ENCODER_INPUT_NAME = 'x'
ENCODER_OUTPUT_NAME = 'image_embeddings'

PREFIX = 'mmsam.'
GRAPH = 'graph'  # 'encoder' or 'decoder'
IMAGE_SIZE = 'image_size'
# encoder graphs: side of the pixel input when it differs from image_size (EfficientViT-SAM L)
ENCODER_INPUT_SIZE = 'encoder_input_size'
PIXEL_MEAN = 'pixel_mean'
PIXEL_STD = 'pixel_std'
MASK_THRESHOLD = 'mask_threshold'
NUM_MASK_TOKENS = 'num_mask_tokens'
RETURN_SINGLE_MASK = 'return_single_mask'
USE_STABILITY_SCORE = 'use_stability_score'
RETURN_EXTRA_METRICS = 'return_extra_metrics'
HQ_TOKEN_ONLY = 'hq_token_only'  # SAM-HQ decoders only


def encode_metadata(values: Mapping[str, Any]) -> Dict[str, str]:
    """``{key: value}`` to ONNX ``metadata_props`` strings (JSON values, prefixed keys)."""
    return {PREFIX + key: json.dumps(value) for key, value in values.items()}


def decode_metadata(props: Mapping[str, str]) -> Dict[str, Any]:
    """Inverse of :func:`encode_metadata`; keys without the prefix are ignored."""
    return {
        key[len(PREFIX) :]: json.loads(value)
        for key, value in props.items()
        if key.startswith(PREFIX)
    }
