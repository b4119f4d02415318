"""Install mmsam: ``pip install -e .`` (see tools/setup_env.sh for the full stack)."""

import os
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


# what an installed (non-editable) mmsam needs beside its code, as OpenMMLab packages
# ship it: ``mmsam/.mim/{configs,tools,demo,model-index.yml}`` (found by get_model and mim)
MIM_FILES = ('configs', 'tools', 'demo', 'model-index.yml')
MIM_DIR = os.path.join(HERE, 'mmsam', '.mim')


def add_mim_extension() -> bool:
    """Copy the model index and configs into ``mmsam/.mim`` for a wheel or an install.

    Editable installs read them from the repository, so nothing is copied there.

    Returns:
        bool: whether a copy was made (and must be removed after the build).
    """
    if not any(cmd in sys.argv for cmd in ('bdist_wheel', 'sdist', 'install', 'build')):
        return False
    shutil.rmtree(MIM_DIR, ignore_errors=True)
    os.makedirs(MIM_DIR)
    for name in MIM_FILES:
        src = os.path.join(HERE, name)
        if os.path.isdir(src):
            shutil.copytree(
                src,
                os.path.join(MIM_DIR, name),
                ignore=shutil.ignore_patterns('__pycache__', '*.pyc'),
            )
        elif os.path.isfile(src):
            shutil.copyfile(src, os.path.join(MIM_DIR, name))
    return True


copied = add_mim_extension()
setup_kwargs = dict(
    name='mmsam',
    version=read_version(),
    description='Segment Anything (SAM) as an OpenMMLab plugin for mmpretrain and mmdet',
    long_description=readme(),
    long_description_content_type='text/markdown',
    packages=find_packages(exclude=('configs', 'tools', 'tests', 'demo')),
    include_package_data=True,
    package_data={'mmsam': ['.mim/**/*', '.mim/*']},
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
