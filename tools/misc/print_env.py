"""Print the versions of mmsam's stack: ``python tools/misc/print_env.py``."""

from mmsam.utils import collect_env

if __name__ == '__main__':
    for name, value in collect_env().items():
        print(f'{name}: {value}')
