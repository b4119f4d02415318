"""Utilities: checkpoint key maps and I/O, atomic file writes, environment info."""

from .atomic_file import atomic_write, atomic_write_json
from .checkpoint_io import (
    CheckpointLoadError,
    CheckpointMismatchError,
    atomic_torch_save,
    check_state_dict,
    load_checkpoint_file,
    load_state_dict_file,
    save_checkpoint,
)
from .checkpoint_keys import (
    convert_hf_to_mmsam,
    convert_mmsam_to_official,
    convert_official_to_mmsam,
    detect_layout,
    infer_encoder_arch,
    mmsam_key_to_official,
    official_key_to_mmsam,
    to_mmsam_layout,
)
from .checkpoint_loader import load_checkpoint_to_model, prepare_state_dict
from .collect_env import collect_env

__all__ = [
    'convert_official_to_mmsam',
    'convert_mmsam_to_official',
    'official_key_to_mmsam',
    'mmsam_key_to_official',
    'collect_env',
    'save_checkpoint',
    'load_state_dict_file',
    'atomic_torch_save',
    'atomic_write',
    'atomic_write_json',
    'load_checkpoint_file',
    'check_state_dict',
    'CheckpointMismatchError',
    'CheckpointLoadError',
    'prepare_state_dict',
    'load_checkpoint_to_model',
    'convert_hf_to_mmsam',
    'detect_layout',
    'infer_encoder_arch',
    'to_mmsam_layout',
]
