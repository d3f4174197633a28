"""``benchmarks/_common.py``: the commit a results file names."""

import importlib
import re
import subprocess
import sys

import pytest
from _benchmarks import BENCH


@pytest.fixture(scope="module")
def common():
    # Imported by its own name, as the scripts import it (its dataclasses need that).
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    return importlib.import_module("_common")


def head() -> str:
    run = subprocess.run(["git", "rev-parse", "HEAD"], cwd=BENCH, capture_output=True, text=True)
    if run.returncode:
        pytest.skip("not a git checkout: the commit cannot be checked")
    return run.stdout.strip()


def test_commit_from_git_is_the_full_hash(common, monkeypatch):
    monkeypatch.delenv("DISYRE_GIT_COMMIT", raising=False)
    commit = common.git_commit()
    assert re.fullmatch(r"[0-9a-f]{40}(\+dirty:[0-9a-f]{12})?", commit)
    assert commit.startswith(head())


def test_given_commit_is_expanded_or_marked(common, monkeypatch):
    full = head()
    monkeypatch.setenv("DISYRE_GIT_COMMIT", full)
    assert common.git_commit() == full
    monkeypatch.setenv("DISYRE_GIT_COMMIT", full[:7])
    assert common.git_commit() == full  # git knows it here
    monkeypatch.setenv("DISYRE_GIT_COMMIT", "0123abc")  # no such commit
    assert common.git_commit() == "0123abc (abbreviated)"


def test_no_benchmark_reaches_into_the_package_privately():
    """Benchmarks use the public API only: no private module, no private attribute of the
    package's objects, no patching."""
    import re

    from _benchmarks import BENCH

    private = re.compile(
        r"disyre_sk\._(?!_)|from disyre_sk import _|mock\.patch|\bdet(?:ector)?\._[a-z]"
    )
    offenders = {
        path.name: hits
        for path in sorted(BENCH.glob("*.py"))
        if (hits := private.findall(path.read_text()))
    }
    assert offenders == {}
