"""scripts/declared_floors.py: the floors CI installs are the ones pyproject.toml declares."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import declared_floors


def test_every_runtime_dependency_pinned_to_its_floor():
    pins = dict(p.split("==") for p in declared_floors.floors())
    assert pins["scikit-learn"] == "1.6"  # validate_data needs 1.6
    assert pins["torch"] == "2.4"
    assert set(pins) >= {"numpy", "scipy", "nibabel", "matplotlib"}


def test_skip_leaves_a_dependency_out():
    names = [p.split("==")[0] for p in declared_floors.floors(skip=("Torch",))]
    assert "torch" not in names and "numpy" in names


def test_a_dependency_without_a_floor_is_refused(tmp_path):
    bad = tmp_path / "pyproject.toml"
    bad.write_text('[project]\ndependencies = ["numpy>=1.24", "scipy"]\n')
    with pytest.raises(ValueError, match="'scipy' has no plain '>=' floor"):
        declared_floors.floors(bad)
