"""What every ``mmsam`` command shares at run time: usage errors, the device, the model."""

import argparse
from typing import List, Optional


class UsageError(ValueError):
    """A bad argument value (exit code 2)."""


class DeviceError(RuntimeError):
    """A device that is named correctly but not available here (exit code 1)."""


def check_device(text: str) -> str:
    """Check ``--device`` before anything is loaded; ``''`` picks CUDA when available.

    Raises:
        UsageError: Not a device name.
        DeviceError: A CUDA device that this machine does not have.
    """
    import torch

    if not text:
        return 'cuda' if torch.cuda.is_available() else 'cpu'
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise UsageError(
            f'bad --device {text!r}: expected cpu, cuda or cuda:N (N = 0 for the first GPU)'
        ) from None
    if device.type == 'cuda':
        if not torch.cuda.is_available():
            raise DeviceError(
                f'--device {text}: no CUDA GPU is available here (torch {torch.__version__}, '
                f'built with CUDA {torch.version.cuda or "no"}); use --device cpu'
            )
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise DeviceError(
                f'--device {text}: there is no GPU {device.index}; this machine has {count} '
                f'(cuda:0 to cuda:{count - 1})'
            )
    return text


def load_sam(args: argparse.Namespace, device: str):
    """The SAM model named by ``--model`` / ``--weights`` on ``device``."""
    from ..apis.model_zoo import get_model

    pretrained = args.weights if args.weights else True
    return get_model(args.model, pretrained=pretrained, device=device)


def dict_options(values: Optional[List[str]], option: str) -> Optional[dict]:
    """``KEY=VALUE`` strings parsed as mmengine's ``DictAction`` does.

    Raises:
        UsageError: A string that is not ``KEY=VALUE`` (named with ``option``).
    """
    if not values:
        return None
    from mmengine.config import DictAction

    namespace = argparse.Namespace()
    try:
        DictAction(option_strings=[], dest='options')(None, namespace, values)
    except ValueError as err:
        raise UsageError(f'bad {option} {values}: {err}') from err
    return namespace.options


def print_report(report) -> int:
    """Print a folder job's summary (to stderr when an image failed); the exit code."""
    import sys

    print(report.summary(), file=sys.stderr if report.failed else sys.stdout)
    return 0 if report.ok else 1
