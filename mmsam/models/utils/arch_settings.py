"""A backbone's ``arch`` argument: a name in its ``arch_zoo`` or a dict of settings."""

import copy
from typing import Iterable, Mapping, Union


def arch_settings(arch: Union[str, dict], arch_zoo: Mapping[str, dict], required: Iterable[str]):
    """The settings an ``arch`` argument stands for, as mmpretrain's backbones read it.

    Args:
        arch (str | dict): A key of ``arch_zoo`` (any case) or a dict of settings.
        arch_zoo (Mapping[str, dict]): The backbone's named settings.
        required (Iterable[str]): The keys a dict must have.

    Returns:
        dict: A copy of the settings (the zoo's entries are never shared).

    Raises:
        ValueError: An unknown name (listing the known ones) or a dict without the
            required keys (naming them).
    """
    if isinstance(arch, str):
        key = arch.lower()
        if key not in arch_zoo:
            raise ValueError(f'arch must be one of {sorted(set(arch_zoo))} or a dict, got {arch!r}')
        return copy.deepcopy(dict(arch_zoo[key]))
    required = sorted(required)
    if not isinstance(arch, dict) or not set(required) <= set(arch):
        raise ValueError(f'a custom arch must be a dict with the keys {required}')
    return copy.deepcopy(arch)
