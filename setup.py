"""Install mmsam: ``pip install -e .`` (see tools/setup_env.sh for the full stack)."""

import os
import platform
import re
import shutil
import sys

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def read_version() -> str:
    with open(os.path.join(HERE, 'mmsam', 'version.py'), encoding='utf-8') as f:
        return re.search(r"__version__ = '([^']+)'", f.read()).group(1)


def parse_requirements(fname: str) -> list:
    """Read a requirements file, skipping comments and ``-r`` includes."""
    reqs = []
    with open(os.path.join(HERE, fname), encoding='utf-8') as f:
        for line in f:
            line = line.split('#', 1)[0].strip()
            if line and not line.startswith('-'):
                reqs.append(line)
    return reqs


def readme() -> str:
    path = os.path.join(HERE, 'README.md')
    if not os.path.exists(path):
        return ''
    with open(path, encoding='utf-8') as f:
        return f.read()


# what an installed mmsam needs beside its code, as OpenMMLab packages ship it:
# ``mmsam/.mim/{configs,tools,demo,model-index.yml}`` (found by get_model; by ``mim search
# mmsam`` for a wheel install: mim 0.3 looks in the distribution's site-packages folder,
# which a PEP 660 editable install leaves empty); as mmdet's setup.py does it
MIM_FILES = ('configs', 'tools', 'demo', 'model-index.yml')
MIM_DIR = os.path.join(HERE, 'mmsam', '.mim')
EDITABLE_COMMANDS = ('develop', 'editable_wheel')  # pip install -e . (legacy / PEP 660)
BUILD_COMMANDS = ('bdist_wheel', 'sdist', 'install', 'build')


def _mim_is_linked() -> bool:
    return all(os.path.islink(os.path.join(MIM_DIR, name)) for name in MIM_FILES)


def _fill_mim(mode: str) -> None:
    """``mmsam/.mim/<name>`` for each of :data:`MIM_FILES`: a relative link or a copy."""
    shutil.rmtree(MIM_DIR, ignore_errors=True)
    os.makedirs(MIM_DIR)
    for name in MIM_FILES:
        src = os.path.join(HERE, name)
        dst = os.path.join(MIM_DIR, name)
        if not os.path.exists(src):
            continue
        if mode == 'symlink':
            os.symlink(os.path.relpath(src, MIM_DIR), dst)
        elif os.path.isdir(src):
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))
        else:
            shutil.copyfile(src, dst)


def add_mim_extension() -> bool:
    """Fill ``mmsam/.mim`` for the setup command being run.

    An editable install (``pip install -e .``) links the repository's folders there
    (copies on Windows), so that the package finds them as an installed one does; the
    links stay. A
    wheel, sdist or plain install copies them; the copy lives in the package and is
    removed from the source tree after the build.

    Returns:
        bool: whether a copy was made (and must be removed after the build).
    """
    if any(cmd in sys.argv for cmd in EDITABLE_COMMANDS):
        _fill_mim('copy' if platform.system() == 'Windows' else 'symlink')
        return False
    if any(cmd in sys.argv for cmd in BUILD_COMMANDS):
        _fill_mim('copy')
        return True
    return False


linked_before = _mim_is_linked()
copied = add_mim_extension()
setup_kwargs = dict(
    name='mmsam',
    version=read_version(),
    description='Segment Anything (SAM) as an OpenMMLab plugin for mmpretrain and mmdet',
    long_description=readme(),
    long_description_content_type='text/markdown',
    packages=find_packages(exclude=('configs', 'tools', 'tests', 'demo')),
    include_package_data=True,
    # serve/static: the page of mmsam serve (its onnxruntime-web comes from npm ci, not the wheel)
    package_data={
        'mmsam': [
            '.mim/**/*',
            '.mim/*',
            'serve/static/*.html',
            'serve/static/*.js',
            'serve/static/*.css',
            'serve/static/package*.json',
        ]
    },
    python_requires='>=3.8',
    license='Apache License 2.0',
    install_requires=parse_requirements('requirements/runtime.txt'),
    extras_require={
        'all': parse_requirements('requirements/optional.txt')
        + parse_requirements('requirements/tests.txt'),
        'tests': parse_requirements('requirements/tests.txt'),
        'optional': parse_requirements('requirements/optional.txt'),
        'onnx': ['onnx', 'onnxruntime'],
        'mim': parse_requirements('requirements/mminstall.txt'),
    },
    entry_points={'console_scripts': ['mmsam=mmsam.cli:main']},
    zip_safe=False,
)
try:
    setup(**setup_kwargs)
finally:
    if copied:  # the copy lives in the wheel; the source tree stays as it was
        shutil.rmtree(MIM_DIR, ignore_errors=True)
        if linked_before:  # an editable install's links
            _fill_mim('symlink')
