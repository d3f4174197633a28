"""Streaming detect: same maps as one scan at a time, resume, per-scan errors, devices."""

import json
import os
import threading
import time

import nibabel as nib
import numpy as np
import pytest
import torch
from toy import smooth_brains

import disyre_sk._stream as stream
import disyre_sk.io as dio
from disyre_sk import DISYREDetector
from disyre_sk._stream import map_path, parse_devices, stream_detect
from disyre_sk.cli import main
from disyre_sk.io import NiftiLoader, load_nifti, normalize_intensity

AFFINE = np.array([[0, 0, 2.0, -10], [0, 2.0, 0, 5], [-2.0, 0, 0, 7], [0, 0, 0, 1]])


def _volume(seed):
    return np.stack([smooth_brains(1, 16, seed=seed + k)[0] for k in range(6)])


def _write_scans(folder, seeds):
    folder.mkdir()
    paths = []
    for i, seed in enumerate(seeds):
        data = (np.transpose(_volume(seed), (2, 1, 0)) * 1000).astype(np.int16)
        path = folder / f"sub-{i}.nii.gz"
        nib.save(nib.Nifti1Image(data, AFFINE), path)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    healthy = _write_scans(folder / "healthy", [100, 200, 300])
    det = DISYREDetector(
        patch_size=16,
        widths=(8, 16),
        n_steps=3,
        batch_size=4,
        stride=8,
        severities=(0.5,),
        device="cpu",
        random_state=0,
    ).fit(NiftiLoader().fit_transform(healthy))
    return det, det.save(folder / "model.disyre")


@pytest.fixture
def scans(tmp_path):
    return _write_scans(tmp_path / "scans", [10 * i for i in range(6)])


def _expected(det, scan):
    volume = normalize_intensity(load_nifti(scan))
    return det.decision_map(volume[None])[0], float(-det.score_samples(volume[None])[0])


def _stored(path):
    # Back in the package's (Z, Y, X) convention, as the map was computed.
    return load_nifti(path)


def test_maps_equal_the_one_scan_at_a_time_path(model, scans, tmp_path):
    det, path = model
    out = tmp_path / "maps"
    summary = stream_detect(path, scans, out, devices=["cpu"])
    assert len(summary.written) == 6 and not summary.skipped and not summary.failed
    rows = json.loads((out / "scores.json").read_text())
    assert [r["scan"] for r in rows] == [str(s) for s in scans]  # input order
    for scan, row in zip(scans, rows):
        expected_map, expected_score = _expected(det, scan)
        np.testing.assert_array_equal(_stored(map_path(out, scan)), expected_map)
        assert row["anomaly_score"] == expected_score
        assert row["outlier"] == (expected_score > -det.offset_)
        written = nib.load(map_path(out, scan))
        np.testing.assert_allclose(written.affine, AFFINE)
        assert written.shape == nib.load(scan).shape
    assert "6 mapped, 0 skipped" in summary.report()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_two_workers_share_the_scans(model, scans, tmp_path, monkeypatch):
    det, path = model
    # Two workers on the CPU (a stand-in for two GPUs): each scan goes to one of them.
    monkeypatch.setattr(stream, "parse_devices", lambda devices: ["cpu", "cpu"])
    threads = set()
    original = DISYREDetector._map_and_score

    def spy(self, X):
        threads.add((id(self), threading.current_thread().name))
        time.sleep(0.2)  # while one worker is busy, the other takes the next scan
        return original(self, X)

    monkeypatch.setattr(DISYREDetector, "_map_and_score", spy)
    out = tmp_path / "maps"
    summary = stream_detect(path, scans, out, devices=["two"], readers=2, writers=2)
    assert len(summary.written) == 6 and summary.devices == ["cpu", "cpu"]
    # Both workers mapped scans, each with its own copy of the model.
    assert len(threads) == 2 and len({model_id for model_id, _ in threads}) == 2
    for scan in scans:
        np.testing.assert_array_equal(_stored(map_path(out, scan)), _expected(det, scan)[0])


def test_resume_skips_maps_and_redoes_leftovers(model, scans, tmp_path):
    det, path = model
    out = tmp_path / "maps"
    first = stream_detect(path, scans[:3], out)
    assert len(first.written) == 3
    stamps = {s: map_path(out, s).stat().st_mtime_ns for s in scans[:3]}
    # A killed run leaves temporary files and no map: they must not count as done.
    partial = out / f".{map_path(out, scans[3]).name}.partial.nii.gz"
    partial.write_bytes(b"half a map")
    tmp = out / f".{map_path(out, scans[4]).name}.0a1b2c.tmp.nii.gz"
    tmp.write_bytes(b"half a map")
    unrelated = out / ".keep-me"
    unrelated.write_text("not ours")
    second = stream_detect(path, scans, out)
    assert sorted(second.skipped) == sorted(map(str, scans[:3]))
    assert [r["scan"] for r in second.written] == [str(s) for s in scans[3:]]
    assert {s: map_path(out, s).stat().st_mtime_ns for s in scans[:3]} == stamps
    assert not partial.exists() and not tmp.exists() and unrelated.exists()
    for scan in scans:
        np.testing.assert_array_equal(_stored(map_path(out, scan)), _expected(det, scan)[0])
    # Scores of both runs, in input order; --overwrite remakes everything.
    rows = json.loads((out / "scores.json").read_text())
    assert [r["scan"] for r in rows] == [str(s) for s in scans]
    again = stream_detect(path, scans, out, overwrite=True)
    assert len(again.written) == 6 and not again.skipped


def test_interrupted_run_leaves_no_map_that_would_be_skipped(model, scans, tmp_path):
    det, path = model
    out = tmp_path / "maps"
    calls = []

    def overlay(volume, anomaly_map, png):
        calls.append(png)
        if len(calls) == 3:
            raise KeyboardInterrupt  # as if the run were killed while writing a map

    with pytest.raises(KeyboardInterrupt):
        stream_detect(path, scans, out, overlay=overlay)
    done = [s for s in scans if map_path(out, s).exists()]
    assert len(done) == 2  # the third map was never put in place
    summary = stream_detect(path, scans, out)
    assert len(summary.skipped) == 2 and len(summary.written) == 4
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
    for scan in scans:
        np.testing.assert_array_equal(_stored(map_path(out, scan)), _expected(det, scan)[0])
    assert len(json.loads((out / "scores.json").read_text())) == 6


def test_bad_scans_are_reported_and_the_others_mapped(model, scans, tmp_path, monkeypatch):
    _, path = model
    folder = scans[0].parent
    (folder / "notes.nii.gz").write_text("not a scan")
    truncated = folder / "truncated.nii.gz"
    truncated.write_bytes(scans[0].read_bytes()[:200])
    nib.save(nib.Nifti1Image(np.ones((12, 16, 6), np.float32), AFFINE), folder / "other.nii.gz")
    # A write that fails for one scan (a full disk, say) fails that scan only.
    original = dio._write_image

    def flaky(img, filename):
        if "sub-2" in filename:
            raise OSError("No space left on device")
        original(img, filename)

    monkeypatch.setattr(dio, "_write_image", flaky)
    bad = ["notes.nii.gz", "truncated.nii.gz", "other.nii.gz"]
    out = tmp_path / "maps"
    summary = stream_detect(path, [*scans, *(folder / b for b in bad)], out)
    failed = {os.path.basename(scan): reason for scan, reason in summary.failed}
    assert sorted(failed) == sorted([*bad, "sub-2.nii.gz"])
    assert (
        "differs from the model's" in failed["other.nii.gz"] and "--crop" in failed["other.nii.gz"]
    )
    assert "No space left" in failed["sub-2.nii.gz"]
    assert len(summary.written) == 5
    assert "5 mapped, 0 skipped (map already there), 4 failed" in summary.report()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
    assert not map_path(out, scans[2]).exists()


def test_cli_detect_reports_failures_and_goes_on(model, scans, tmp_path, capsys):
    _, path = model
    (scans[0].parent / "broken.nii.gz").write_text("not a scan")
    out = tmp_path / "maps"
    rc = main(["detect", str(path), str(scans[0].parent), "-o", str(out), "--devices", "cpu"])
    captured = capsys.readouterr()
    assert rc == 2
    assert "6 mapped, 0 skipped (map already there), 1 failed" in captured.out
    assert "broken.nii.gz" in captured.err and "rerun" in captured.err
    assert len(json.loads((out / "scores.json").read_text())) == 6
    capsys.readouterr()
    rc = main(["detect", str(path), *map(str, scans), "-o", str(out), "--device", "cpu"])
    assert rc == 0 and "0 mapped, 6 skipped" in capsys.readouterr().out


def test_refusals_before_any_work(model, scans, tmp_path):
    _, path = model
    twin = tmp_path / "twin"
    twin.mkdir()
    (twin / scans[0].name).write_bytes(scans[0].read_bytes())
    with pytest.raises(ValueError, match="would both write sub-0_disyre_map"):
        stream_detect(path, [scans[0], twin / scans[0].name], tmp_path / "o")
    with pytest.raises(ValueError, match="more than once"):
        stream_detect(path, scans, tmp_path / "o", devices=["cpu", "cpu"])
    with pytest.raises(ValueError, match="at least 1"):
        stream_detect(path, scans, tmp_path / "o", prefetch=0)
    slices = DISYREDetector(patch_size=16, widths=(8, 16), n_steps=1, batch_size=2).fit(
        smooth_brains(4, 16)
    )
    with pytest.raises(ValueError, match="trained on 3-D volumes"):
        stream_detect(slices, scans, tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_parse_devices():
    cpu_only = not torch.cuda.is_available()
    assert parse_devices(["cpu"]) == ["cpu"]
    if cpu_only:
        assert parse_devices(None) == ["cpu"] and parse_devices(["all"]) == ["cpu"]
        with pytest.raises(ValueError, match="CUDA"):
            parse_devices(["cuda:0"])
    with pytest.raises(ValueError, match="not a torch device"):
        parse_devices(["gpu0"])
    with pytest.raises(ValueError, match="more than once"):
        parse_devices(["cpu,cpu"])


def test_a_fitted_detector_streams_too(model, scans, tmp_path):
    det, _ = model
    summary = stream_detect(det, scans[:2], tmp_path / "maps")
    assert len(summary.written) == 2 and summary.devices == ["cpu"]
    assert det.verbose is False  # the caller's detector is used as it is, not altered


@pytest.mark.gpu
def test_every_gpu_maps_its_share(model, scans, tmp_path):
    det, path = model
    summary = stream_detect(path, scans, tmp_path / "maps", devices=["all"])
    assert len(summary.written) == 6 and all(d.startswith("cuda") for d in summary.devices)
    for scan in scans:
        np.testing.assert_allclose(
            _stored(map_path(tmp_path / "maps", scan)), _expected(det, scan)[0], atol=2e-3
        )
