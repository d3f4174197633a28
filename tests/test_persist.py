import json
import pickle

import numpy as np
import pytest
import torch
from toy import smooth_brains

import disyre_sk._persist as persist
from disyre_sk import DISYREDetector

TINY = dict(
    patch_size=16,
    widths=(8, 16),
    n_steps=3,
    batch_size=4,
    stride=8,
    severities=(0.5,),
    random_state=0,
)


@pytest.fixture(scope="module")
def data():
    return smooth_brains(6, size=16, seed=0)


@pytest.fixture(scope="module")
def fitted(data):
    return DISYREDetector(**TINY).fit(data)


def test_round_trip(fitted, data, tmp_path):
    path = fitted.save(tmp_path / "m.disyre")
    loaded = DISYREDetector.load(path, device="cpu")
    np.testing.assert_array_equal(loaded.decision_map(data), fitted.decision_map(data))
    np.testing.assert_array_equal(loaded.predict(data), fitted.predict(data))
    assert loaded.get_params() == {**fitted.get_params(), "device": "cpu"}
    assert loaded.offset_ == fitted.offset_ and loaded.image_shape_ == fitted.image_shape_
    assert loaded.history_["loss"] == pytest.approx(fitted.history_["loss"])


def test_table_layout_round_trip(data, tmp_path):
    flat = data.reshape(len(data), -1)
    det = DISYREDetector(**TINY, image_shape=(16, 16)).fit(flat)
    loaded = DISYREDetector.load(det.save(tmp_path / "t.disyre"))
    assert loaded.decision_map(flat).shape == flat.shape


def test_file_holds_no_pickled_objects(fitted, tmp_path):
    path = fitted.save(tmp_path / "m.disyre")
    payload = torch.load(path, weights_only=True)
    assert payload["format"] == persist.FORMAT_NAME
    assert json.loads(payload["params"])["patch_size"] == 16
    assert all(isinstance(v, torch.Tensor) for v in payload["state_dict"].values())


def test_malicious_pickle_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("code ran",))

    path = tmp_path / "evil.disyre"
    with open(path, "wb") as handle:
        pickle.dump({"format": persist.FORMAT_NAME, "x": Evil()}, handle)
    with pytest.raises(ValueError, match="without unpickling"):
        DISYREDetector.load(path)


def test_newer_format_and_other_version(fitted, tmp_path, monkeypatch):
    monkeypatch.setattr(persist, "FORMAT_VERSION", 99)
    path = fitted.save(tmp_path / "new.disyre")
    monkeypatch.setattr(persist, "FORMAT_VERSION", 1)
    with pytest.raises(ValueError, match="Upgrade disyre_sk"):
        DISYREDetector.load(path)
    monkeypatch.setattr(persist, "__version__", "0.0.1")
    path = fitted.save(tmp_path / "old.disyre")
    monkeypatch.undo()
    with pytest.warns(UserWarning, match="0.0.1"):
        DISYREDetector.load(path)


def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        DISYREDetector.load(tmp_path / "missing.disyre")
    (tmp_path / "junk.disyre").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="model file"):
        DISYREDetector.load(tmp_path / "junk.disyre")
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        DISYREDetector().save(tmp_path / "x.disyre")


def test_custom_corruption_warns_on_load(data, tmp_path):
    from disyre_sk.corruption import FPICorruption

    det = DISYREDetector(**TINY, corruption=FPICorruption()).fit(data)
    with pytest.warns(UserWarning, match="custom corruption"):
        loaded = DISYREDetector.load(det.save(tmp_path / "c.disyre"))
    np.testing.assert_array_equal(loaded.decision_map(data), det.decision_map(data))


def test_save_is_atomic(fitted, tmp_path, monkeypatch):
    path = fitted.save(tmp_path / "m.disyre")
    before = path.read_bytes()

    def broken(obj, handle):
        handle.write(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken)
    with pytest.raises(OSError):
        fitted.save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.disyre"]


def test_path_parameters_are_saved_as_strings(data, tmp_path):
    det = DISYREDetector(**TINY, checkpoint_dir=tmp_path / "ckpt").fit(data)
    loaded = DISYREDetector.load(det.save(tmp_path / "m.disyre"), device="cpu")
    assert loaded.checkpoint_dir == str(tmp_path / "ckpt")
