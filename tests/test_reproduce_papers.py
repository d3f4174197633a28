"""``benchmarks/reproduce_papers.py`` on tiny fake CamCAN, BraTS and ATLAS folders.

The folders use the exact file names the UPD study's preparation scripts write (and the
loaders read with ``preprocessing="upd"``). The script is loaded from its file
(``benchmarks/`` is not a package). The numbers of a 3-step network mean nothing: the
tests check the data handling, the streaming metrics, the report and the errors.
"""

import importlib.util
import json
import math
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "reproduce_papers.py"
GRID = (8, 24, 24)  # (Z, Y, X) in the package's convention
TINY = [
    "--quick",
    "--device",
    "cpu",
    "--n-steps",
    "3",
    "--widths",
    "8",
    "16",
    "--patch-size",
    "16",
    "--batch-size",
    "4",
    "--stride",
    "8",
    "--severities",
    "0.5",
    "--checkpoint-every",
    "2",
    "--n-healthy",
    "1",
]


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("benchmarks_reproduce_papers", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while defining
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def _save(path: Path, zyx: np.ndarray) -> None:
    """Write a (Z, Y, X) array as NIfTI (stored X, Y, Z with an identity affine)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.ascontiguousarray(zyx.transpose(2, 1, 0)), np.eye(4)), str(path))


def _brain(rng, grid=GRID) -> np.ndarray:
    z, y, x = np.indices(grid)
    inside = ((y - grid[1] / 2) / 9) ** 2 + ((x - grid[2] / 2) / 8) ** 2 < 1
    inside &= (z >= 1) & (z < grid[0] - 1)  # first and last slices hold no brain
    scan = np.where(inside, 100 + 20 * rng.random(grid), 0).astype(np.float32)
    scan[inside & (np.abs(x - grid[2] / 2) < 2)] = 300  # a bright "ventricle"
    return scan


def _lesioned(rng, grid=GRID, value=450.0):
    scan = _brain(rng, grid)
    mask = np.zeros(grid, dtype=np.uint8)
    mask[3:5, 8:12, 6:10] = 2  # slices 3 and 4 only
    scan[mask > 0] = value
    return scan, mask


def make_camcan(root: Path, n: int = 4, modality: str = "T2w", grid=GRID) -> Path:
    rng = np.random.default_rng(1)
    for i in range(n):
        sub = f"sub-CC1100{30 + i}"
        _save(root / sub / f"{sub}_{modality}_stripped_registered.nii.gz", _brain(rng, grid))
    return root


def make_brats(root: Path, n: int = 3, grid=GRID) -> Path:
    rng = np.random.default_rng(2)
    for i in range(n):
        sub = f"BraTS20_Training_00{i + 1}"
        scan, mask = _lesioned(rng, grid)
        _save(root / sub / f"{sub}_t2_registered.nii.gz", scan)
        _save(root / sub / "anomaly_segmentation.nii.gz", mask)
    return root


def make_atlas(root: Path, n: int = 2) -> Path:
    rng = np.random.default_rng(3)
    for i in range(n):
        sub = f"sub-r001s00{i + 1}"
        anat = root / "Training" / "R001" / sub / "ses-1" / "anat"
        scan, mask = _lesioned(rng)
        _save(anat / f"{sub}_ses-1_space-MNI152NLin2009aSym_T1w_stripped_registered.nii.gz", scan)
        _save(anat / "anomaly_segmentation.nii.gz", mask)
    return root


def test_reference_settings_are_the_detector_defaults(script):
    from disyre_sk import DISYREDetector

    defaults = DISYREDetector().get_params()
    for key, value in script.REFERENCE.items():
        if key == "stride":  # None there means a quarter of the window: 32 for 128
            assert defaults["stride"] is None and value == defaults["patch_size"] // 4
        else:
            assert defaults[key] == value, key


class _IdentityDetector:
    """Stands in for a fitted detector: the map is the normalised scan itself."""

    top_k = 0.01

    def __init__(self):
        self.calls = []

    def decision_map(self, slices):
        self.calls.append(slices.shape)
        return slices.astype(np.float32)


def test_streaming_evaluation_signs_and_bookkeeping(script, tmp_path):
    from _reproduce_data import brain_box
    from _reproduce_eval import StreamingEvaluation, topk_mean

    rng = np.random.default_rng(0)
    healthy = tmp_path / "healthy.nii.gz"
    _save(healthy, _brain(rng))
    tests = []
    for i in range(2):
        # The lesion is the brightest 2.4 % of the brain: 1 after normalisation, the rest
        # of the brain below 0.3 (the bright midline strip), so the identity map is ideal.
        scan, mask = _lesioned(rng, value=5000.0)
        tests.append((tmp_path / f"t{i}.nii.gz", tmp_path / f"m{i}.nii.gz"))
        _save(tests[-1][0], scan)
        _save(tests[-1][1], mask)
    box = brain_box([(4, 21, 5, 20)], 16, GRID[1:])
    assert box == (4, 21, 4, 20)  # grown to one patch around the centre
    det = _IdentityDetector()
    ev = StreamingEvaluation(det, GRID, box, (0, GRID[0]))
    ev.add_healthy("h", str(healthy))
    for i, (scan, mask) in enumerate(tests):
        ev.add_test(f"t{i}", str(scan), str(mask))
    m = ev.result()
    assert det.calls == [(6, 17, 16)] * 3  # only the brain slices, cropped to the box
    for key in ("pixel_ap_pooled", "pixel_ap_per_volume", "best_dice_pooled", "slice_auroc"):
        assert m[key] == pytest.approx(1.0), key
    assert m["pixel_auroc_pooled"] == pytest.approx(1.0)
    assert (m["n_slices"], m["n_slices_lesioned"], m["n_volumes"]) == (12, 4, 3)
    assert [row["pixel_ap"] for row in ev.per_volume] == pytest.approx([1.0, 1.0])
    assert len(ev.healthy_slice_scores) == 6
    assert topk_mean(np.arange(10.0), 0.2) == 8.5 and topk_mean(np.arange(10.0), 3) == 8.0
    assert topk_mean(np.array([]), 0.01) == 0.0


def test_brats_end_to_end_and_resume(script, tmp_path, capsys):
    camcan = make_camcan(tmp_path / "CamCAN")
    brats = make_brats(tmp_path / "MICCAI_BraTS2020_TrainingData")
    out = tmp_path / "results"
    argv = ["--camcan", str(camcan), "--brats", str(brats), "--out", str(out), *TINY]
    record = script.main(argv)

    md = (out / "reproduce_brats_t2.md").read_text()
    saved = json.loads((out / "reproduce_brats_t2.json").read_text())
    for field in ("**command**", "**git commit**", "**date (UTC)**", "**CPU**", "**torch**"):
        assert field in md
    assert "--brats" in md and "Not the reference settings" in md
    # The published figures sit beside ours, in the right rows.
    assert "| pixel AP, pooled over all brain voxels |" in md
    row = next(line for line in md.splitlines() if line.startswith("| pixel AP, pooled"))
    assert row.endswith("| 0.808 | ≈ 0.75 |")
    row = next(line for line in md.splitlines() if line.startswith("| best Dice, pooled"))
    assert "| 0.747 |" in row
    row = next(line for line in md.splitlines() if line.startswith("| slice AUROC"))
    assert "| 0.92 |" in row
    assert "subsamples 10,000 pixels per volume" in md and "--slab" in md

    m = saved["metrics"]
    keys = [k for k, _ in script.ROWS]
    for key in keys:
        assert m[key] is not None and math.isfinite(m[key]), key
        if key != "seconds_per_volume":
            assert 0.0 <= m[key] <= 1.0, key
    # 3 lesioned test volumes, 1 held-out healthy; slices 1..6 hold brain, 3 and 4 lesion.
    assert (m["n_slices"], m["n_slices_lesioned"]) == (3 * 6, 3 * 2)
    assert (m["n_volumes"], m["n_volumes_lesioned"]) == (4, 3)
    assert m["n_lesion_voxels"] == 3 * 2 * 4 * 4
    assert m["lesion_voxels_outside_box"] == 0 and m["lesion_voxels_outside_brain"] == 0
    assert saved["data"]["n_train"] == 3 and saved["data"]["n_healthy"] == 1
    assert saved["data"]["slice_shape"] == [17, 16]  # the brain box, grown to a patch
    assert [v["subject"] for v in saved["per_volume"]] == [
        f"BraTS20_Training_00{i}" for i in (1, 2, 3)
    ]
    assert saved["published"] and record["steps"] == 3
    model = Path(record["model_path"])
    assert model.is_file() and (model.parent / "checkpoints" / "checkpoint.pt").is_file()

    # Running the same command again resumes from the finished checkpoint: same numbers.
    capsys.readouterr()
    again = script.main(argv)
    assert "Resuming training at step 3" in capsys.readouterr().out
    for key in keys[:-1]:
        assert again["metrics"][key] == pytest.approx(m[key], abs=1e-12), key


def test_atlas_t1_quotes_the_isbi_dice(script, tmp_path):
    camcan = make_camcan(tmp_path / "CamCAN", n=3, modality="T1w")
    atlas = make_atlas(tmp_path / "ATLAS_2")
    out = tmp_path / "out"
    args = ["--camcan", str(camcan), "--atlas", str(atlas), "--modality", "t1"]
    script.main([*args, "--out", str(out), *TINY, "--slab", "2", "6"])
    md = (out / "reproduce_atlas_t1.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith("| best Dice, pooled"))
    assert row.endswith("| ≈ 0.34 |")
    assert "0.808" not in md and "slices 2–5 of the 8-slice axial grid" in md
    m = json.loads((out / "reproduce_atlas_t1.json").read_text())["metrics"]
    assert m["n_slices"] == 2 * 4 and m["n_lesion_voxels"] == 2 * 2 * 4 * 4


def test_bad_folders_get_clear_errors(script, tmp_path):
    camcan = make_camcan(tmp_path / "CamCAN")
    brats = make_brats(tmp_path / "BraTS")
    base = ["--out", str(tmp_path / "out"), *TINY]

    def run(*args):
        return script.main([*args, *base])

    # Masks missing.
    (brats / "BraTS20_Training_002" / "anomaly_segmentation.nii.gz").unlink()
    with pytest.raises(ValueError, match=r"no segmentation: expected anomaly_segmentation"):
        run("--camcan", str(camcan), "--brats", str(brats))
    # CamCAN and BraTS on different grids: resample.
    other = make_brats(tmp_path / "BraTS_other", n=2, grid=(8, 20, 24))
    with pytest.raises(ValueError, match=r"not all on one voxel grid.*\(8, 20, 24\).*resample"):
        run("--camcan", str(camcan), "--brats", str(other))
    # A mask on another grid than its scan.
    odd = make_brats(tmp_path / "BraTS_odd", n=1)
    _save(odd / "BraTS20_Training_001" / "anomaly_segmentation.nii.gz", np.zeros((8, 24, 20)))
    with pytest.raises(ValueError, match=r"mask .* has shape .* must be on the scan's grid"):
        run("--camcan", str(camcan), "--brats", str(odd))
    # Files named as in the official release, read with the default UPD names.
    official = tmp_path / "CamCAN_official" / "sub-CC110033" / "anat"
    _save(official / "sub-CC110033_T2w.nii.gz", _brain(np.random.default_rng(0)))
    with pytest.raises(ValueError, match=r"_T2w_stripped_registered.*preprocessing=None"):
        run("--camcan", str(official.parent.parent), "--brats", str(make_brats(tmp_path / "B")))
    # Not skull-stripped: no zero background.
    full = make_camcan(tmp_path / "CamCAN_full", n=2)
    scan = full / "sub-CC110031" / "sub-CC110031_T2w_stripped_registered.nii.gz"
    _save(scan, np.full(GRID, 50.0, dtype=np.float32))
    with pytest.raises(ValueError, match=r"does not look skull-stripped"):
        run("--camcan", str(full), "--brats", str(make_brats(tmp_path / "B2")), "--n-train", "1")
    # ATLAS is T1 only; a slab outside the grid; a single CamCAN scan.
    brats_ok = make_brats(tmp_path / "B3")
    with pytest.raises(ValueError, match=r"T1-weighted scans only: use --modality t1"):
        run("--camcan", str(camcan), "--atlas", str(tmp_path))
    with pytest.raises(ValueError, match=r"--slab 4 12 must satisfy 0 <= START < STOP <= 8"):
        run("--camcan", str(camcan), "--brats", str(brats_ok), "--slab", "4", "12")
    one = make_camcan(tmp_path / "CamCAN_one", n=1)
    with pytest.raises(ValueError, match=r"at least one must be held out"):
        run("--camcan", str(one), "--brats", str(make_brats(tmp_path / "B4")))
