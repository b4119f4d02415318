"""Building blocks of SAM's encoder and decoder.

``LayerNorm2d`` is mmpretrain's (construct it with ``eps=1e-6``, SAM's value).
"""

from mmpretrain.models.utils import LayerNorm2d

from .random_position_encoding import RandomPositionEncoding
from .rel_pos_attention import (
    encoder_layer_forward,
    expand_rel_pos_bias,
    rel_pos_attend,
    rel_pos_terms,
)
from .two_way_transformer import MLPBlock, TokenAttention, TwoWayAttentionBlock, TwoWayTransformer

__all__ = [
    'LayerNorm2d',
    'RandomPositionEncoding',
    'expand_rel_pos_bias',
    'encoder_layer_forward',
    'rel_pos_attend',
    'rel_pos_terms',
    'MLPBlock',
    'TokenAttention',
    'TwoWayAttentionBlock',
    'TwoWayTransformer',
]
