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


def test_counting_network_counts_inference_and_a_dry_one_swapped_in_after_fit_maps(tmp_path):
    """What the speed, validation and fast-inference benchmarks rely on: the wrapper counts
    only inference inputs, and set as ``network_`` after fit (the host-work profile) a dry
    one maps without the network and with the detector's padding rule."""
    import numpy as np
    from _benchmarks import load_benchmark

    from disyre_sk import DISYREDetector
    from disyre_sk.nn import UNet

    common = load_benchmark("_common")
    x = np.zeros((4, 24, 24), np.float32)
    x[:, 4:20, 2:22] = np.random.default_rng(0).uniform(0.2, 1, (4, 16, 20))
    det = DISYREDetector(
        patch_size=16,
        widths=(8, 16),
        n_steps=2,
        batch_size=2,
        severities=(0.5,),
        validation_fraction=0.0,
        network=lambda **config: common.Counting(UNet(**config)),
        random_state=0,
    ).fit(x)
    counting = det.network_
    counting.reset()
    det.decision_map(x[:1])
    assert counting.windows == det.inference_plan(x[:1]).network_inputs
    assert counting.sizes == {(16, 16)}
    det.network_ = common.Counting(counting.net, dry=True)
    assert det.network_.size_multiple == counting.net.size_multiple
    # Input returned unchanged: the residual is the fusion's round-off alone.
    assert det.decision_map(x[:1]).max() < 1e-5
    assert det.network_.windows == counting.windows


def test_record_rows_runs_the_jobs_after_the_provenance_and_writes_them_all(
    common, tmp_path, monkeypatch, capsys
):
    import json

    order = []
    monkeypatch.setattr(common, "git_commit", lambda: order.append("provenance") or "abc")

    def jobs():  # a generator: nothing runs before record_rows starts the clock
        for seed in (0, 1):
            yield lambda seed=seed: order.append(seed) or [{"seed": seed}]

    out = tmp_path / "r.md"
    rc = common.record_rows(out, "T", jobs(), lambda rows: f"{len(rows)} rows")
    assert rc == 0 and order == ["provenance", 0, 1]
    text = out.read_text()
    assert "2 rows" in text and "Run time: " in text and "- **commit**: abc" in text
    assert json.loads(out.with_suffix(".json").read_text())["raw"] == [{"seed": 0}, {"seed": 1}]
    assert "2 rows" in capsys.readouterr().out
