import json
import os
import pickle
import warnings

import numpy as np
import pytest
import torch
from toy import smooth_brains, time_limit

import disyre_sk._engine.persist as persist
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


def test_malicious_pickle_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "payload-ran"

    class Evil:
        def __reduce__(self):
            return (marker.write_text, ("code ran",))

    path = tmp_path / "evil.disyre"
    with open(path, "wb") as handle:
        pickle.dump({"format": persist.FORMAT_NAME, "x": Evil()}, handle)
    with pytest.raises(ValueError, match="without unpickling"):
        DISYREDetector.load(path)
    assert not marker.exists()


def test_newer_format_is_refused(fitted, tmp_path, monkeypatch):
    # A file written by a future version: readable only up to FORMAT_VERSION.
    monkeypatch.setattr(persist, "_PLAIN_VERSION", persist.FORMAT_VERSION + 1)
    path = fitted.save(tmp_path / "new.disyre")
    monkeypatch.undo()
    with pytest.raises(ValueError, match="Upgrade disyre_sk"):
        DISYREDetector.load(path)


def test_other_package_version_warns(fitted, data, tmp_path, monkeypatch):
    monkeypatch.setattr(persist, "__version__", "0.0.1")
    path = fitted.save(tmp_path / "old.disyre")
    monkeypatch.undo()
    with pytest.warns(UserWarning, match="0.0.1"):
        loaded = DISYREDetector.load(path)
    np.testing.assert_array_equal(loaded.decision_map(data), fitted.decision_map(data))


def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        DISYREDetector.load(tmp_path / "missing.disyre")
    (tmp_path / "junk.disyre").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="model file"):
        DISYREDetector.load(tmp_path / "junk.disyre")
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        DISYREDetector().save(tmp_path / "x.disyre")


def test_package_corruptions_are_stored_and_rebuilt(data, tmp_path):
    import warnings

    from disyre_sk.corruption import DAGCorruption, FPICorruption

    for corruption in (FPICorruption(size_range=(0.2, 0.5)), DAGCorruption(p_bright=1.0)):
        det = DISYREDetector(**TINY, corruption=corruption).fit(data)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no "custom corruption" warning
            loaded = DISYREDetector.load(det.save(tmp_path / "c.disyre"))
        assert type(loaded.corruption) is type(corruption)
        assert repr(loaded.corruption) == repr(corruption)
        np.testing.assert_array_equal(loaded.decision_map(data), det.decision_map(data))


def test_a_users_own_corruption_warns_on_load(data, tmp_path):
    from disyre_sk.corruption import FPICorruption

    class Mine(FPICorruption):
        pass

    det = DISYREDetector(**TINY, corruption=Mine()).fit(data)
    with pytest.warns(UserWarning, match="custom corruption"):
        loaded = DISYREDetector.load(det.save(tmp_path / "c.disyre"))
    assert loaded.corruption == "dag"
    np.testing.assert_array_equal(loaded.decision_map(data), det.decision_map(data))


def test_a_stored_corruption_with_bad_arguments_is_refused(data, tmp_path):
    import json

    import torch

    from disyre_sk._engine import persist
    from disyre_sk.corruption import DAGCorruption

    det = DISYREDetector(**TINY, corruption=DAGCorruption()).fit(data)
    payload = det._payload()
    params = json.loads(payload["params"])
    params["corruption"]["params"]["p_bright"] = 7
    payload["params"] = json.dumps(params)
    payload["checksums"] = json.dumps(persist._checksums(payload))  # a consistent edit
    torch.save(payload, tmp_path / "bad.disyre")
    with pytest.raises(ValueError, match=r"invalid corruption.*p_bright"):
        DISYREDetector.load(tmp_path / "bad.disyre")
    params["corruption"]["class"] = "FutureCorruption"
    payload["params"] = json.dumps(params)
    payload["checksums"] = json.dumps(persist._checksums(payload))
    torch.save(payload, tmp_path / "new.disyre")
    with pytest.raises(ValueError, match="upgrade disyre_sk"):
        DISYREDetector.load(tmp_path / "new.disyre")


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


# ----------------------------------------------------------------- integrity (format 2)
def _payload(path):
    return torch.load(path, weights_only=True)


def _rewrite(payload, path, *, resum=True):
    """Write an edited payload, with fresh checksums unless ``resum`` is False."""
    payload = dict(payload)
    if resum and "checksums" in payload:
        payload["checksums"] = json.dumps(persist._checksums(payload))
    torch.save(payload, path)
    return path


def test_format_1_file_loads_with_a_warning(fitted, data, tmp_path):
    payload = _payload(fitted.save(tmp_path / "m.disyre"))
    del payload["checksums"]
    payload["format_version"] = 1
    path = _rewrite(payload, tmp_path / "v1.disyre")
    with pytest.warns(UserWarning, match="no checksum"):
        loaded = DISYREDetector.load(path)
    np.testing.assert_array_equal(loaded.decision_map(data), fitted.decision_map(data))


def test_every_checksummed_entry_is_verified(fitted, tmp_path):
    payload = _payload(fitted.save(tmp_path / "m.disyre"))
    name = next(iter(payload["state_dict"]))
    payload["state_dict"][name] = payload["state_dict"][name].clone()
    payload["state_dict"][name].view(-1)[0] += 1e-3
    with pytest.raises(persist.ModelFileError, match=f"SHA-256 check in state_dict/{name}"):
        DISYREDetector.load(_rewrite(payload, tmp_path / "w.disyre", resum=False))
    payload = _payload(tmp_path / "m.disyre")
    payload["state"] = payload["state"].replace('"offset_": ', '"offset_": 1')
    with pytest.raises(persist.ModelFileError, match="SHA-256 check in state"):
        DISYREDetector.load(_rewrite(payload, tmp_path / "s.disyre", resum=False))


def test_bit_flips_are_refused_or_harmless(fitted, data, tmp_path):
    # Every byte offset class of the archive: headers, JSON, tensor data, directory. A
    # flip either makes the load fail with the file's name, or lands in bytes the
    # format never reads (zip padding), and then the model is exactly the saved one.
    path = fitted.save(tmp_path / "m.disyre")
    raw = bytearray(path.read_bytes())
    reference = fitted.decision_map(data[:2])
    refused = 0
    rng = np.random.default_rng(0)
    offsets = rng.choice(len(raw), size=60, replace=False)
    for offset in offsets:
        flipped = bytearray(raw)
        flipped[offset] ^= 1 << int(rng.integers(8))
        target = tmp_path / "flip.disyre"
        target.write_bytes(bytes(flipped))
        try:
            loaded = DISYREDetector.load(target)
        except ValueError as exc:
            assert "flip.disyre" in str(exc)
            refused += 1
            continue
        np.testing.assert_array_equal(loaded.decision_map(data[:2]), reference)
    assert refused >= 40  # most bytes of a model file matter


@pytest.mark.parametrize("keep", [0.0, 0.1, 0.5, 0.9, 0.999])
def test_truncated_file_is_refused(fitted, tmp_path, keep):
    raw = fitted.save(tmp_path / "m.disyre").read_bytes()
    path = tmp_path / "cut.disyre"
    path.write_bytes(raw[: int(keep * len(raw))])
    with pytest.raises(ValueError, match=r"cut\.disyre"):
        DISYREDetector.load(path)


def test_edited_metadata_with_fresh_checksums_is_still_checked(fitted, tmp_path):
    payload = _payload(fitted.save(tmp_path / "m.disyre"))
    cases = {
        "params": ({"inference_batch_size": 0}, "invalid parameters"),
        "state": ({"offset_": float("nan")}, "invalid learned state"),
    }
    for key, (edit, message) in cases.items():
        edited = dict(payload)
        edited[key] = json.dumps({**json.loads(payload[key]), **edit})
        with pytest.raises(persist.ModelFileError, match=message):
            DISYREDetector.load(_rewrite(edited, tmp_path / f"{key}.disyre"))
    edited = dict(payload, params=json.dumps({**json.loads(payload["params"]), "future": 1}))
    with pytest.raises(persist.ModelFileError, match="newer version"):
        DISYREDetector.load(_rewrite(edited, tmp_path / "future.disyre"))
    edited = dict(payload, params="{not json")
    with pytest.raises(persist.ModelFileError, match="malformed params"):
        DISYREDetector.load(_rewrite(edited, tmp_path / "bad.disyre"))
    edited = dict(payload, extra="x")
    with pytest.raises(persist.ModelFileError, match="unexpected entries"):
        DISYREDetector.load(_rewrite(edited, tmp_path / "extra.disyre"))


def test_crafted_architecture_allocates_nothing(fitted, tmp_path):
    payload = _payload(fitted.save(tmp_path / "m.disyre"))
    config = json.loads(payload["network_config"])
    # ~25 GB of float32 weights if it were built; refused from shapes alone.
    huge = dict(config, widths=[8, 16, 50000], n_res_blocks=2, n_groups=8)
    edited = dict(payload, network_config=json.dumps(huge))
    with time_limit(30), pytest.raises(persist.ModelFileError, match="do not fit"):
        DISYREDetector.load(_rewrite(edited, tmp_path / "huge.disyre"))
    deep = dict(config, widths=[8] * 100000)
    edited = dict(payload, network_config=json.dumps(deep))
    with time_limit(30), pytest.raises(persist.ModelFileError, match="larger than"):
        DISYREDetector.load(_rewrite(edited, tmp_path / "deep.disyre"))


def test_threshold_staleness_travels_with_the_file(fitted, data, tmp_path):
    det = DISYREDetector.load(fitted.save(tmp_path / "m.disyre"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        det.decision_function(data)  # same settings: no warning
    det.set_params(map_smoothing=2.0)
    reloaded = DISYREDetector.load(det.save(tmp_path / "changed.disyre"))
    with pytest.warns(UserWarning, match="stale threshold"):
        reloaded.decision_function(data)


def test_save_cleans_stale_temp_files_and_uses_ordinary_permissions(fitted, tmp_path):
    stale = tmp_path / ".m.disyre.0a1b2c.tmp"
    stale.write_bytes(b"left by a killed save")
    path = fitted.save(tmp_path / "m.disyre")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.disyre"]
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_files_without_a_conditioning_setting_load_the_published_blocks(fitted, data, tmp_path):
    # Model files written before the setting existed describe additive blocks (their
    # weights have one bias per channel); they load as such and map as before.
    from disyre_sk.nn import UNet

    old = pickle.loads(pickle.dumps(fitted))
    config = {**old.network_.config, "conditioning": "add"}
    torch.manual_seed(0)
    old.network_ = UNet(**config).eval()
    del old.network_.config["conditioning"]
    path = tmp_path / "old.disyre"
    old.save(path)
    loaded = DISYREDetector.load(path)
    assert loaded.network_.config["conditioning"] == "add"
    np.testing.assert_array_equal(loaded.decision_map(data[:2]), old.decision_map(data[:2]))
