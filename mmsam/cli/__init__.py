"""The ``mmsam`` command: ``segment``, ``amg``, ``annotate``, ``embed``, ``convert`` and
``serve``.

One module per command (:mod:`.segment`, :mod:`.amg`, :mod:`.annotate`, :mod:`.embed`,
:mod:`.convert`, :mod:`.serve`), each with a ``run(args)``; :mod:`.distributed` runs the
folder jobs on several processes (``--launcher``); :mod:`.parser` defines the command line,
:mod:`.folder_jobs` runs a job over a folder of images (listing, resume, progress,
failures). The library they call is :mod:`mmsam.apis`.

Exit codes:

* 0: success;
* 1: an error, reported in one line (a missing or unreadable file, weights that cannot
  be loaded, a GPU that is not there, an output folder that cannot be written, an
  input folder without images) or, for folders, at least one image failed (listed at
  the end);
* 2: a bad command line (an unknown option, a bad point, box, device name or
  automatic-mask-generator option value);
* 130: interrupted (Ctrl-C); a folder job keeps its finished images and a rerun of the
  same command resumes after them.

Help, argument errors and ``mmsam.list_models()`` do not import torch, mmdet or
mmpretrain (they answer in a fraction of a second); the heavy stack is imported when
a command runs.

``demo/image_demo.py`` and ``demo/amg_demo.py`` are ``mmsam segment`` and ``mmsam amg``.
"""

import importlib
import sys
from typing import List, Optional

from .common import DeviceError, UsageError
from .parser import build_parser

#: command -> the module of this package whose ``run(args)`` does it
_COMMANDS = {
    'segment': 'segment',
    'amg': 'amg',
    'annotate': 'annotate',
    'embed': 'embed',
    'convert': 'convert',
    'serve': 'serve',
}

#: commands that go over a folder and resume after an interruption
_FOLDER_COMMANDS = ('amg', 'annotate', 'embed')


def _one_line(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    return ' '.join(text.split())


def _reported_errors() -> tuple:
    """The errors reported in one line (exit code 1) rather than with a traceback."""
    errors = [OSError, ValueError, ImportError, DeviceError]
    zoo = sys.modules.get('mmsam.apis.model_zoo')  # only raised once it is imported
    if zoo is not None:
        errors.append(zoo.CheckpointDownloadError)
    return tuple(errors)


def main(argv: Optional[List[str]] = None, prog: Optional[str] = None) -> int:
    """Run the ``mmsam`` command line.

    Args:
        argv (list[str], optional): Arguments (``sys.argv[1:]`` by default).
        prog (str, optional): Program name in help and error messages.

    Returns:
        int: The exit code (see the module docstring).
    """
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    name = f'{parser.prog} {args.command}'
    try:
        command = importlib.import_module(f'.{_COMMANDS[args.command]}', __name__)
        return command.run(args)
    except KeyboardInterrupt:
        resume = ' (finished images are kept: rerun the same command to resume)'
        folder_job = args.command in _FOLDER_COMMANDS
        print(f'\n{name}: interrupted{resume if folder_job else ""}', file=sys.stderr)
        return 130
    except UsageError as err:
        parser.print_usage(sys.stderr)
        print(f'{name}: error: {_one_line(err)}', file=sys.stderr)
        return 2
    except _reported_errors() as err:
        # missing files, unreadable images or weights, weights that cannot be downloaded
        # or do not fit the model, a broken environment: one clear line, no traceback
        message = _one_line(err)
        if not isinstance(err, (OSError, ValueError, ImportError, DeviceError)):
            message += ' (here: --weights /path/to/the/file.pth)'
        print(f'{name}: error: {message}', file=sys.stderr)
        return 1


__all__ = ['main']
