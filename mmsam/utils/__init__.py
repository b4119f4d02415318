"""Utilities: checkpoint key maps, environment info."""

from .checkpoint_io import atomic_torch_save, load_state_dict_file, save_checkpoint
from .checkpoint_keys import (
    convert_mmsam_to_official,
    convert_official_encoder_to_vitsam,
    convert_official_to_mmsam,
    is_mmsam_layout,
    is_official_layout,
    mmsam_key_to_official,
    official_key_to_mmsam,
)
from .collect_env import collect_env

__all__ = [
    'convert_official_to_mmsam',
    'convert_mmsam_to_official',
    'convert_official_encoder_to_vitsam',
    'is_official_layout',
    'is_mmsam_layout',
    'official_key_to_mmsam',
    'mmsam_key_to_official',
    'collect_env',
    'save_checkpoint',
    'load_state_dict_file',
    'atomic_torch_save',
]
