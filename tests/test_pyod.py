"""Tests of the PyOD adapter disyre_sk.pyod.DISYREPyOD, with PyOD's idioms."""

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from pyod.models.base import BaseDetector
from pyod.models.iforest import IForest
from sklearn.base import clone, is_outlier_detector

from disyre_sk import DISYREDetector
from disyre_sk.pyod import DISYREPyOD

REPO = Path(__file__).resolve().parents[1]
TINY = dict(patch_size=8, widths=(4, 8), n_steps=2, batch_size=4, severities=(0.5,))


def _tiny_detector(**params):
    return DISYREDetector(image_shape=(4, 4), random_state=0, **{**TINY, **params})


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return rng.random((20, 16)), rng.random((7, 16))


@pytest.fixture(scope="module")
def fitted(data):
    # one fit shared by the tests: each costs a second or more on a busy CPU
    X_train, _ = data
    return DISYREPyOD(_tiny_detector(), contamination=0.1).fit(X_train)


def test_is_a_pyod_detector():
    clf = DISYREPyOD()
    assert isinstance(clf, BaseDetector)
    assert clf.detector is None and clf.contamination == 0.1
    assert is_outlier_detector(clf)


def test_fit_sets_pyod_attributes(fitted, data):
    X_train, _ = data
    scores = fitted.decision_scores_
    assert scores.shape == (20,) and scores.dtype == np.float64
    assert np.isfinite(scores).all()
    assert set(np.unique(fitted.labels_)) <= {0, 1}
    np.testing.assert_array_equal(fitted.labels_, (scores > fitted.threshold_).astype(int))
    # the contamination fraction of the training samples is labelled outlier
    assert fitted.labels_.mean() == pytest.approx(0.1, abs=1 / 20)
    # PyOD's sign: the negative of the wrapped estimator's sklearn score_samples
    np.testing.assert_allclose(scores, -fitted.detector_.score_samples(X_train), rtol=1e-6)


def test_contamination_and_y_ignored_with_pyod_warning(data):
    X_train, _ = data
    with pytest.warns(UserWarning, match="y should not be presented"):
        clf = DISYREPyOD(_tiny_detector(), contamination=0.25).fit(X_train, np.zeros(20, int))
    assert clf.labels_.sum() == pytest.approx(5, abs=1)


def test_decision_function_predict_and_proba(fitted, data):
    X_train, X_test = data
    scores = fitted.decision_function(X_test)
    assert scores.shape == (7,)
    np.testing.assert_allclose(fitted.decision_function(X_train), fitted.decision_scores_, 1e-5)
    labels = fitted.predict(X_test)
    assert set(labels.tolist()) <= {0, 1}
    np.testing.assert_array_equal(labels, (scores > fitted.threshold_).astype(int))
    for method in ("linear", "unify"):
        proba = fitted.predict_proba(X_test, method=method)
        assert proba.shape == (7, 2)
        assert ((proba >= 0) & (proba <= 1)).all()
        np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    labels2, confidence = fitted.predict(X_test, return_confidence=True)
    np.testing.assert_array_equal(labels2, labels)
    assert confidence.shape == (7,) and ((confidence >= 0) & (confidence <= 1)).all()


def test_decision_map_passthrough(fitted, data):
    _, X_test = data
    maps = fitted.decision_map(X_test)
    np.testing.assert_array_equal(maps, fitted.detector_.decision_map(X_test))
    assert maps.dtype == np.float32 and maps.shape[0] == 7


def test_wrapped_detector_is_cloned_not_fitted(fitted):
    assert isinstance(fitted.detector_, DISYREDetector)
    assert fitted.detector_ is not fitted.detector
    assert not hasattr(fitted.detector, "network_")
    assert hasattr(fitted.detector_, "network_")


def test_params_clone_and_nested_set_params():
    clf = DISYREPyOD(_tiny_detector(), contamination=0.2)
    params = clf.get_params(deep=True)
    assert params["contamination"] == 0.2 and params["detector__patch_size"] == 8
    cloned = clone(clf)
    assert cloned.detector is not clf.detector
    assert cloned.get_params()["detector__n_steps"] == 2
    clf.set_params(detector__n_steps=3, contamination=0.3)
    assert clf.detector.n_steps == 3 and clf.contamination == 0.3
    assert "DISYREPyOD" in repr(clf)


def test_invalid_contamination_and_unfitted():
    with pytest.raises(ValueError, match="contamination"):
        DISYREPyOD(contamination=0.7)
    with pytest.raises(Exception, match="not fitted"):
        DISYREPyOD().decision_function(np.zeros((2, 16)))
    with pytest.raises(Exception, match="not fitted"):
        DISYREPyOD().decision_map(np.zeros((2, 16)))


def test_side_by_side_with_a_pyod_detector(fitted, data):
    _, X_test = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        iforest = IForest(n_estimators=10, contamination=0.1, random_state=0).fit(data[0])
    for clf in (fitted, iforest):
        assert clf.decision_function(X_test).shape == (7,)
        assert clf.predict_proba(X_test).shape == (7, 2)


def _run(code, env=None):
    env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO
    )


def test_pyod_stays_optional():
    code = (
        "import sys\n"
        "import disyre_sk\n"
        "print('pyod' in sys.modules)\n"
        "sys.modules['pyod'] = None  # makes `import pyod...` fail as if not installed\n"
        "try:\n"
        "    import disyre_sk.pyod\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    proc = _run(code)
    assert proc.returncode == 0, proc.stderr
    imported, message = proc.stdout.strip().split("\n", 1)
    assert imported == "False"  # importing disyre_sk does not import pyod
    assert 'pip install "disyre-sk[pyod]"' in message


def test_a_combined_detector_is_wrapped_as_well():
    from toy import smooth_brains

    from disyre_sk import CombinedDetector, small_anomaly_specialist

    X = np.stack([smooth_brains(2, 16, seed=10 * i) for i in range(6)])
    det = DISYREDetector(
        patch_size=16,
        widths=(8, 16),
        n_steps=2,
        batch_size=2,
        map_standardization="location",
        random_state=0,
    )
    combo = CombinedDetector([("a", det), ("b", small_anomaly_specialist(det))], weights=[1, 0.5])
    clf = DISYREPyOD(combo, contamination=0.2).fit(X)
    assert isinstance(clf.detector_, CombinedDetector) and not hasattr(combo, "detectors_")
    np.testing.assert_allclose(clf.decision_scores_, -clf.detector_.score_samples(X))
    np.testing.assert_array_equal(clf.decision_map(X[:2]), clf.detector_.decision_map(X[:2]))
    assert int(clf.labels_.sum()) == 1  # 20 % of 6, rounded as PyOD does
