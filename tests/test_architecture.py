"""The package's module-level imports point down: no cycle, the leaf helpers stay leaves."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import import_layers


def test_no_import_cycle():
    assert import_layers.cycles(import_layers.graph()) == []


def test_leaf_helpers_import_nothing_from_the_package():
    graph = import_layers.graph()
    for leaf in (
        "_files",
        "_device",
        "metrics._core",
        "_engine.distributed",
        "schedule",
        "callbacks",
    ):
        top, deferred = graph[f"disyre_sk.{leaf}"]
        assert not top and not deferred, (leaf, top, deferred)


def test_a_subpackage_module_imported_from_outside_brings_its_package():
    # Python runs metrics/__init__.py before metrics/_core.py; siblings inside the
    # package import each other without going through it.
    graph = import_layers.graph()
    assert {"disyre_sk.metrics", "disyre_sk.metrics._core"} <= graph["disyre_sk._data"][0]
    assert "disyre_sk.metrics" not in graph["disyre_sk.metrics._pixel"][0]


def test_engine_never_imports_the_estimator():
    graph = import_layers.graph()
    engine = ["disyre_sk._data", *(m for m in graph if m.startswith("disyre_sk._engine"))]
    assert "disyre_sk._engine.training" in engine and "disyre_sk._engine.persist" in engine
    for name in engine:
        top, deferred = graph[name]
        assert "disyre_sk._detector" not in top | deferred, name


def test_cycle_finder_finds_a_cycle():
    fake = {"a": ({"b"}, set()), "b": ({"c"}, set()), "c": ({"a"}, set())}
    assert import_layers.cycles(fake) == [["a", "b", "c", "a"]]
