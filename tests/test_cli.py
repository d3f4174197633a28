import json

import nibabel as nib
import numpy as np
import pytest
from toy import smooth_brains

from disyre_sk.cli import build_parser, main


@pytest.fixture
def scans(tmp_path):
    """Four small skull-stripped 'volumes' with an oblique affine, one with a lesion."""
    affine = np.array([[0, 0, 2.0, -10], [0, 2.0, 0, 5], [-2.0, 0, 0, 7], [0, 0, 0, 1]])
    folder = tmp_path / "scans"
    folder.mkdir()
    paths = []
    for i in range(4):
        vol = np.stack([smooth_brains(1, 16, seed=10 * i + k)[0] for k in range(6)])
        data = (np.transpose(vol, (2, 1, 0)) * 1000).astype(np.int16)
        p = folder / f"sub-{i}.nii.gz"
        nib.save(nib.Nifti1Image(data, affine), p)
        paths.append(p)
    return paths


def test_help_mentions_expected_input(capsys):
    for args in (["--help"], ["fit", "--help"], ["detect", "--help"]):
        with pytest.raises(SystemExit):
            main(args)
        assert "skull-stripped" in capsys.readouterr().out


def test_fit_detect_evaluate(scans, tmp_path, capsys):
    model = tmp_path / "model.disyre"
    rc = main(
        [
            "fit",
            *map(str, scans[:3]),
            "-o",
            str(model),
            "--patch-size",
            "16",
            "--widths",
            "8",
            "16",
            "--steps",
            "3",
            "--batch-size",
            "4",
            "--device",
            "cpu",
        ]
    )
    assert rc == 0 and model.exists()
    out = tmp_path / "maps"
    rc = main(["detect", str(model), str(scans[0].parent), "-o", str(out), "--png"])
    assert rc == 0
    for scan in scans:
        src = nib.load(scan)
        m = nib.load(out / scan.name.replace(".nii.gz", "_disyre_map.nii.gz"))
        assert m.shape == src.shape
        np.testing.assert_allclose(m.affine, src.affine)
        data = m.get_fdata()
        assert np.all(data >= 0) and np.all(data[np.asarray(src.dataobj) == 0] == 0)
        assert (out / scan.name.replace(".nii.gz", "_overlay.png")).exists()
    scores = json.loads((out / "scores.json").read_text())
    assert len(scores) == 4 and all(np.isfinite(r["anomaly_score"]) for r in scores)
    # Existing maps are skipped (resumable over large folders); scores.json still lists
    # every scan, from the scores recorded when each map was written.
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*_disyre_map.nii.gz")}
    capsys.readouterr()
    assert main(["detect", str(model), str(scans[0].parent), "-o", str(out)]) == 0
    assert "0 mapped, 4 skipped" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in out.glob("*_disyre_map.nii.gz")} == stamps
    assert json.loads((out / "scores.json").read_text()) == scores

    masks = []
    for scan in scans[:2]:
        src = nib.load(scan)
        mask = np.zeros(src.shape, np.uint8)
        mask[6:10, 6:10, 2:4] = 1
        p = tmp_path / scan.name.replace(".nii.gz", "_mask.nii.gz")
        nib.save(nib.Nifti1Image(mask, src.affine), p)
        masks.append(p)
    maps = [out / s.name.replace(".nii.gz", "_disyre_map.nii.gz") for s in scans[:2]]
    capsys.readouterr()
    rc = main(
        [
            "evaluate",
            *map(str, maps),
            "--masks",
            *map(str, masks),
            "--healthy-maps",
            str(out / scans[3].name.replace(".nii.gz", "_disyre_map.nii.gz")),
            "--json",
            str(tmp_path / "m.json"),
        ]
    )
    assert rc == 0
    result = json.loads((tmp_path / "m.json").read_text())
    assert 0 <= result["average_precision"] <= 1 and "dice_at_0.01_fpr" in result


def test_detect_shape_mismatch_is_explained(scans, tmp_path, capsys):
    model = tmp_path / "model.disyre"
    main(
        [
            "fit",
            *map(str, scans[:2]),
            "-o",
            str(model),
            "--patch-size",
            "16",
            "--widths",
            "8",
            "16",
            "--steps",
            "2",
            "--batch-size",
            "2",
            "--device",
            "cpu",
        ]
    )
    other = tmp_path / "other.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((12, 16, 6), np.float32), np.eye(4)), other)
    assert main(["detect", str(model), str(other), "-o", str(tmp_path / "o")]) == 2
    assert "--crop" in capsys.readouterr().err
    assert main(["detect", str(model), str(other), "-o", str(tmp_path / "o"), "--crop"]) == 0
    assert nib.load(tmp_path / "o" / "other_disyre_map.nii.gz").shape == (12, 16, 6)


def test_missing_inputs(tmp_path):
    with pytest.raises(SystemExit, match="no NIfTI"):
        main(["fit", str(tmp_path / "*.nii.gz"), "-o", str(tmp_path / "m")])
    assert main(["detect", str(tmp_path / "none.disyre"), str(tmp_path), "-o", "x"]) == 2


def test_parser_defaults():
    args = build_parser().parse_args(["demo"])
    assert args.out == "disyre_demo" and args.device == "auto" and not args.full


def _fit_small(scans, tmp_path):
    model = tmp_path / "model.disyre"
    main(
        [
            "fit",
            *map(str, scans[:2]),
            "-o",
            str(model),
            "--patch-size",
            "16",
            "--widths",
            "8",
            "16",
            "--steps",
            "2",
            "--batch-size",
            "2",
            "--device",
            "cpu",
        ]
    )
    return model


def _bad_scans(tmp_path, good):
    src = nib.load(good)
    bad = {}
    bad["not_nifti"] = tmp_path / "notes.txt"
    bad["not_nifti"].write_text("hello")
    truncated = tmp_path / "truncated.nii.gz"
    truncated.write_bytes(good.read_bytes()[:200])
    bad["truncated"] = truncated
    four_d = tmp_path / "four_d.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((*src.shape, 3), np.float32), src.affine), four_d)
    bad["four_d"] = four_d
    nan = tmp_path / "nan.nii.gz"
    data = np.asarray(src.dataobj).astype(np.float32)
    data[3, 3, 3] = np.nan
    nib.save(nib.Nifti1Image(data, src.affine), nan)
    bad["nan"] = nan
    empty = tmp_path / "empty.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros(src.shape, np.float32), src.affine), empty)
    bad["empty"] = empty
    bad["missing"] = tmp_path / "missing.nii.gz"
    return bad


@pytest.mark.parametrize("case", ["not_nifti", "truncated", "four_d", "nan", "empty", "missing"])
def test_detect_bad_scan_names_file_and_leaves_no_partial_output(scans, tmp_path, case, capsys):
    model = _fit_small(scans, tmp_path)
    bad = _bad_scans(tmp_path, scans[0])[case]
    out = tmp_path / f"out_{case}"
    try:
        rc = main(["detect", str(model), str(bad), "-o", str(out)])
    except SystemExit as exc:  # argument-level problems exit through argparse/SystemExit
        rc, message = 2, str(exc)
    else:
        message = capsys.readouterr().err
    assert rc != 0
    assert bad.name in message
    written = list(out.glob("*.nii*")) if out.exists() else []
    assert written == []
    leftovers = [p for p in out.iterdir() if p.name.startswith(".")] if out.exists() else []
    assert leftovers == []


def test_model_file_that_is_not_one(scans, tmp_path, capsys):
    fake = tmp_path / "fake.disyre"
    fake.write_bytes(b"\x00" * 64)
    rc = main(["detect", str(fake), str(scans[0]), "-o", str(tmp_path / "o")])
    assert rc == 2 and "fake.disyre" in capsys.readouterr().err


def test_evaluate_mask_shape_mismatch(scans, tmp_path):
    model = _fit_small(scans, tmp_path)
    main(["detect", str(model), str(scans[0]), "-o", str(tmp_path / "maps")])
    mask = tmp_path / "mask.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((3, 3, 3), np.uint8), np.eye(4)), mask)
    with pytest.raises(SystemExit, match=r"mask\.nii\.gz"):
        main(
            ["evaluate", *map(str, (tmp_path / "maps").glob("*_map.nii.gz")), "--masks", str(mask)]
        )
