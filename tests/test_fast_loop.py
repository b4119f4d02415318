"""``pytest --fast`` leaves out the tests that start subprocesses, however they start them.

The functions below are test code (this file is under ``tests/``); they are inspected,
never run.
"""

import os.path as osp
import subprocess
import sys
from unittest import mock

from mmsam.testing import eval_runs
from mmsam.testing.eval_runs import assert_box_prompt_eval_runs, run_cli
from mmsam.testing.outer_loop import starts_subprocess

TESTS = (osp.dirname(osp.abspath(__file__)),)


def _direct():
    subprocess.run(['true'], check=True)


def _python():
    return [sys.executable, '-c', 'pass']


def _imported_helper():
    run_cli(['--help'])


def _imported_helper_by_module():
    eval_runs.run_box_prompt_eval('config.py', 'weights.pth', 'data', 'work', 64)


def _imported_assertion():
    assert_box_prompt_eval_runs('config.py', 'weights.pth', 'folder', 64)


def _two_levels():
    _one_level()


def _one_level():
    _imported_helper()


def _ping(depth):  # helpers that call each other, no subprocess
    return _pong(depth - 1) if depth else 0


def _pong(depth):
    return _ping(depth - 1) if depth else 0


def _library_only():
    # library functions are not followed; a mock is not a function
    from mmsam.cli.parser import build_parser

    build_parser().parse_args(['segment', 'x.png', '--points', '1,2'])
    mock.MagicMock()()
    return osp.join('a', 'b')


def test_subprocess_starts_are_found_through_helpers():
    for func in (
        _direct,
        _python,
        _imported_helper,
        _imported_helper_by_module,
        _imported_assertion,
        _two_levels,
    ):
        assert starts_subprocess(func, TESTS), func.__name__
    for func in (_ping, _pong, _library_only):
        assert not starts_subprocess(func, TESTS), func.__name__


def test_mmsam_testing_helpers_that_run_tools_are_found():
    names = (
        'run_test_script',
        'run_box_prompt_eval',
        'assert_box_prompt_eval_runs',
        'run_cli',
        'assert_cli_segment_matches_predictor',
    )
    for name in names:
        assert starts_subprocess(getattr(eval_runs, name)), name
    assert not starts_subprocess(eval_runs.write_tiny_eval_config)
    assert not starts_subprocess(eval_runs.input_size_overrides)


def _documented():
    """Nothing here starts a subprocess.

    Prose may name sys and a subprocess. Only code counts.
    """
    return 'subprocess.'


class _Item:
    """What ``tests/conftest.py`` reads of a collected test."""

    def __init__(self, function, fspath=__file__):
        self.function, self.fspath = function, fspath
        self.fixturenames, self._fixtureinfo = (), None


def test_prose_is_not_a_subprocess_start():
    assert not starts_subprocess(_documented, TESTS)


def test_conftest_marks_the_tests_that_call_subprocess_helpers(request):
    conftest = request.config.pluginmanager.get_plugin(osp.join(TESTS[0], 'conftest.py'))
    assert conftest._is_outer_loop(_Item(_imported_assertion))
    assert conftest._is_outer_loop(_Item(_two_levels))
    assert not conftest._is_outer_loop(_Item(_library_only))
    assert conftest._is_outer_loop(_Item(_library_only, osp.join(TESTS[0], 'test_lint.py')))
    # this module's tests only inspect the helpers: the inner loop
    assert request.node.get_closest_marker('outer_loop') is None
