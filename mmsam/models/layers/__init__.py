"""Building blocks of SAM's encoder and decoder."""

from .layer_norm_2d import LayerNorm2d
from .random_position_encoding import RandomPositionEncoding
from .rel_pos_attention import (
    RelPosAttention,
    decomposed_rel_pos_bias,
    gather_rel_pos,
    resize_rel_pos,
)
from .two_way_transformer import MLPBlock, TokenAttention, TwoWayAttentionBlock, TwoWayTransformer
from .window_partition import window_partition, window_unpartition

__all__ = [
    'LayerNorm2d',
    'RandomPositionEncoding',
    'RelPosAttention',
    'decomposed_rel_pos_bias',
    'gather_rel_pos',
    'resize_rel_pos',
    'MLPBlock',
    'TokenAttention',
    'TwoWayAttentionBlock',
    'TwoWayTransformer',
    'window_partition',
    'window_unpartition',
]
