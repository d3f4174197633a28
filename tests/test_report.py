"""Training reports: the figures and the JSON of final figures, from Python and the CLI."""

import json

import nibabel as nib
import numpy as np
import pytest
from toy import textured

from disyre_sk import DISYREDetector
from disyre_sk._engine import anomaly_families
from disyre_sk.cli import main
from disyre_sk.report import write_training_report

TINY = dict(
    patch_size=16,
    widths=(8, 16),
    batch_size=4,
    stride=8,
    severities=(0.25, 0.5),
    random_state=0,
    device="cpu",
)
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def few_images(monkeypatch):
    monkeypatch.setattr(anomaly_families, "IMAGES_PER_FAMILY", 3)


@pytest.fixture(scope="module")
def data():
    return textured(12, 16, seed=0)


@pytest.fixture
def fitted(data):
    return DISYREDetector(**TINY, n_steps=6, validation_every=3).fit(data)


def _png(path):
    content = path.read_bytes()
    assert content[:8] == PNG and len(content) > 2000, path
    # Width and height from the IHDR chunk.
    return int.from_bytes(content[16:20], "big"), int.from_bytes(content[20:24], "big")


def test_report_folder_after_fit(fitted, tmp_path):
    summary = write_training_report(fitted, tmp_path / "report")
    folder = tmp_path / "report"
    for name in ("loss.png", "validation.png", "examples.png"):
        width, height = _png(folder / name)
        assert width >= 300 and height >= 200
    on_disk = json.loads((folder / "report.json").read_text())
    assert on_disk == summary
    h = fitted.history_
    assert summary["files"] == {
        "loss": "loss.png",
        "validation": "validation.png",
        "examples": "examples.png",
        "summary": "report.json",
    }
    assert summary["steps_trained"] == summary["n_steps"] == 6
    assert summary["final_loss"] == pytest.approx(np.mean(h["loss"]))
    assert summary["best_step"] == h["best_step"] and summary["n_validations"] == 2
    kept = summary["validation_at_kept_step"]
    assert kept["step"] == h["best_step"]
    assert kept["mean_average_precision"] == max(
        r["mean_average_precision"] for r in h["validation"]
    )
    assert summary["validation_at_last_step"]["step"] == 6
    assert summary["validation_seconds"] > 0
    ex = summary["examples"]
    assert ex["source"] == "the validation set of fit"
    assert len(ex["families"]) == len(ex["average_precision"]) == 2 * 3
    # Each example's AP, recomputed with scikit-learn from the maps of the same images.
    from sklearn.metrics import average_precision_score

    shown = fitted._validation_examples
    maps = fitted._restorer().maps(shown["images"], shown["foreground"])
    expected = [
        average_precision_score(y[f], m[f])
        for m, y, f in zip(maps, shown["masks"], shown["foreground"])
    ]
    assert ex["average_precision"] == pytest.approx(expected, abs=1e-9)
    # The example grid has one row per image and a column per severity.
    width, height = _png(folder / "examples.png")
    assert height > 6 * 100 and width > (len(TINY["severities"]) + 3) * 100


def test_report_of_a_loaded_model_and_with_x_val(fitted, data, tmp_path):
    loaded = DISYREDetector.load(fitted.save(tmp_path / "m.disyre"))
    summary = write_training_report(loaded, tmp_path / "a")
    assert "examples" not in summary["files"] and summary["examples"] is None
    assert not (tmp_path / "a" / "examples.png").exists()
    assert summary["best_step"] == fitted.history_["best_step"]
    summary = write_training_report(loaded, tmp_path / "b", X_val=data[:2], n_examples=1)
    assert summary["examples"]["source"] == "X_val"
    assert len(summary["examples"]["families"]) == 3
    _png(tmp_path / "b" / "examples.png")


def test_report_without_validation(data, tmp_path):
    det = DISYREDetector(**TINY, n_steps=3).fit(data)
    summary = write_training_report(det, tmp_path)
    _png(tmp_path / "validation.png")
    assert summary["n_validations"] == 0 and summary["best_step"] is None
    assert summary["validation_at_kept_step"] is None
    assert "skipped" in summary["validation_note"]


def test_report_errors(fitted, tmp_path):
    with pytest.raises(ValueError, match="n_examples"):
        write_training_report(fitted, tmp_path, n_examples=0)
    with pytest.raises(Exception, match="not fitted"):
        write_training_report(DISYREDetector(), tmp_path)


def test_cli_fit_writes_a_report(tmp_path, capsys):
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    paths = []
    for i in range(5):
        vol = textured(4, 16, seed=10 * i)
        path = tmp_path / f"sub-{i}.nii.gz"
        nib.save(
            nib.Nifti1Image((np.transpose(vol, (2, 1, 0)) * 1000).astype(np.int16), affine), path
        )
        paths.append(path)
    common = ["--patch-size", "16", "--widths", "8", "16", "--batch-size", "4", "--device", "cpu"]
    rc = main(
        [
            "fit",
            *map(str, paths[:4]),
            "-o",
            str(tmp_path / "m.disyre"),
            *common,
            "--steps",
            "4",
            "--validation-every",
            "2",
            "--validation-scans",
            str(paths[4]),
            "--early-stopping",
            "--n-iter-no-change",
            "5",
            "--report",
            str(tmp_path / "report"),
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out
    assert "validating on X_val (1 samples)" in out and "training report" in out
    summary = json.loads((tmp_path / "report" / "report.json").read_text())
    assert summary["n_validations"] == 2 and summary["examples"] is not None
    _png(tmp_path / "report" / "examples.png")
