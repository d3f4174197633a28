"""Every docstring example in the package runs and shows what it claims.

The examples use tiny networks on 16x16 images, so the whole set takes seconds (torch
runs on one thread here, see ``conftest.py``).
"""

from __future__ import annotations

import doctest
import importlib
import importlib.util
import pkgutil

import pytest

import disyre_sk

FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _modules() -> list[str]:
    names = [disyre_sk.__name__]
    names += [
        info.name
        for info in pkgutil.walk_packages(disyre_sk.__path__, prefix=f"{disyre_sk.__name__}.")
    ]
    return sorted(names)


def _params():
    # Every module, disyre_sk.pyod too: pyod is a test dependency, so a missing or broken
    # install fails here instead of skipping.
    for name in _modules():
        yield pytest.param(name, id=name)


@pytest.mark.parametrize("modname", list(_params()))
def test_docstring_examples(modname):
    module = importlib.import_module(modname)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    # The finder keeps only objects defined in this module, so none runs twice.
    for test in finder.find(module, modname):
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {modname}"


def test_docstring_examples_exist():
    # A guard against the collection above silently finding nothing.
    finder = doctest.DocTestFinder(exclude_empty=True)
    tests = finder.find(importlib.import_module("disyre_sk._detector"))
    assert sum(len(t.examples) for t in tests) > 20
