"""Run several ``mmsam`` commands one after the other in this process, for torchrun tests.

``python -m torch.distributed.run ... tests/tools/sharded_commands.py COMMANDS.json``:
the file holds a list of argument lists (each with ``--launcher pytorch``). This script
joins the process group first, so that the commands share it (their ``init_launcher``
calls nest); one launch saves starting the processes and importing the stack once per
command. Each line a command prints is prefixed with ``[<command>] ``. Exits with the
first non-zero exit code.
"""

import contextlib
import io
import json
import sys

from mmsam.cli import main
from mmsam.cli.distributed import close_launcher, init_launcher

if __name__ == '__main__':
    with open(sys.argv[1], encoding='utf-8') as f:
        commands = json.load(f)
    rank, world_size = init_launcher('pytorch')
    for argv in commands:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = main(argv)
        for line in out.getvalue().splitlines():
            print(f'[{argv[0]}] {line}', flush=True)
        if code:
            sys.exit(code)
    close_launcher(world_size)
