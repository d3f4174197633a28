import json
from pathlib import Path

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
    for args in (["--help"], ["fit", "--help"], ["calibrate", "--help"], ["detect", "--help"]):
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
            *_tiny("--steps", "3", "--batch-size", "4"),  # the last value of a flag wins
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
    # The pooled AP, recomputed with scikit-learn over the same voxels (map != 0 or mask).
    from sklearn.metrics import average_precision_score

    scores, labels = [], []
    for m, y in zip(maps, masks):
        m, y = nib.load(m).get_fdata(), nib.load(y).get_fdata() > 0.5
        keep = (m != 0) | y
        scores.append(m[keep])
        labels.append(y[keep])
    expected = average_precision_score(np.concatenate(labels), np.concatenate(scores))
    assert result["average_precision"] == pytest.approx(expected, abs=1e-9)
    assert "dice_at_0.01_fpr" in result
    # Scan level: the two lesioned maps against the healthy one, each scored by the mean
    # of its top 1 % foreground values (rounded up, as score_samples reads top_k=0.01).
    healthy_map = nib.load(out / scans[3].name.replace(".nii.gz", "_disyre_map.nii.gz"))

    def top_mean(values):
        return np.sort(values)[-int(np.ceil(0.01 * values.size)) :].mean()

    h = healthy_map.get_fdata()
    healthy_top = top_mean(h[h != 0])
    pairs = [(t > healthy_top) + 0.5 * (t == healthy_top) for t in map(top_mean, scores)]
    assert result["n_scans"] == {"lesioned": 2, "healthy": 1}
    assert result["scan_auroc"] == pytest.approx(float(np.mean(pairs)))
    low, high = result["scan_auroc_interval_95"]
    assert 0 <= low <= high <= 1
    for key in ("average_precision", "best_dice", "auroc"):
        low, high = result["per_volume"]["interval_95"][key]
        assert 0 <= low <= high <= 1
    # --resamples 0: no intervals, the same figures.
    capsys.readouterr()
    args = ["evaluate", *map(str, maps), "--masks", *map(str, masks), "--resamples", "0"]
    assert main(args) == 0
    plain = json.loads(capsys.readouterr().out)
    assert "interval_95" not in plain["per_volume"] and "scan_auroc" not in plain
    assert plain["average_precision"] == result["average_precision"]
    assert main([*args[:-1], "-1"]) != 0


def test_detect_shape_mismatch_is_explained(scans, tmp_path, capsys):
    model = tmp_path / "model.disyre"
    main(
        [
            "fit",
            *map(str, scans[:2]),
            "-o",
            str(model),
            *_tiny(),
        ]
    )
    other = tmp_path / "other.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((12, 16, 6), np.float32), np.eye(4)), other)
    assert main(["detect", str(model), str(other), "-o", str(tmp_path / "o")]) == 2
    assert "--crop" in capsys.readouterr().err
    assert main(["detect", str(model), str(other), "-o", str(tmp_path / "o"), "--crop"]) == 0
    assert nib.load(tmp_path / "o" / "other_disyre_map.nii.gz").shape == (12, 16, 6)


def test_missing_inputs(tmp_path, capsys):
    assert main(["fit", str(tmp_path / "*.nii.gz"), "-o", str(tmp_path / "m")]) == 2
    assert "no NIfTI" in capsys.readouterr().err
    assert main(["detect", str(tmp_path / "none.disyre"), str(tmp_path), "-o", "x"]) == 2


def test_parser_defaults():
    args = build_parser().parse_args(["demo"])
    assert args.out == "disyre_demo" and args.device == "auto" and not args.full


def _tiny(*extra):
    """Flags that make any recipe train in a second on the 16 x 16 fixture scans."""
    return [
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
        *extra,
    ]


def _fit_small(scans, tmp_path):
    model = tmp_path / "model.disyre"
    main(["fit", *map(str, scans[:2]), "-o", str(model), *_tiny()])
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


def test_evaluate_mask_shape_mismatch(scans, tmp_path, capsys):
    model = _fit_small(scans, tmp_path)
    main(["detect", str(model), str(scans[0]), "-o", str(tmp_path / "maps")])
    mask = tmp_path / "mask.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((3, 3, 3), np.uint8), np.eye(4)), mask)
    rc = main(
        ["evaluate", *map(str, (tmp_path / "maps").glob("*_map.nii.gz")), "--masks", str(mask)]
    )
    assert rc == 2 and "mask.nii.gz" in capsys.readouterr().err


# ------------------------------------------------------------ user errors: no traceback
def _user_error_cases(scans, tmp_path):
    """(name, argv, text the message must hold) for each user error of each subcommand."""
    model = _fit_small(scans, tmp_path)
    bad = _bad_scans(tmp_path, scans[0])
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    damaged = tmp_path / "damaged.disyre"
    raw = bytearray(model.read_bytes())
    # A byte of the stored settings (the JSON sits verbatim in the uncompressed archive):
    # unlike an arbitrary offset, which may be alignment padding, it always matters.
    raw[raw.index(b"random_state")] ^= 0xFF
    damaged.write_bytes(bytes(raw))
    cut = tmp_path / "cut.disyre"
    cut.write_bytes(model.read_bytes()[:500])
    maps = tmp_path / "maps"
    main(["detect", str(model), str(scans[0]), "-o", str(maps)])
    the_map = str(next(maps.glob("*_map.nii.gz")))
    healthy = [str(p) for p in scans[:2]]
    fit = ["fit", *healthy, "-o", str(tmp_path / "new.disyre"), *_tiny()]
    return [
        ("fit truncated scan", ["fit", str(bad["truncated"]), *fit[1:]], "truncated.nii.gz"),
        ("fit 4-D scan", ["fit", str(bad["four_d"]), *fit[1:]], "four_d.nii.gz"),
        ("fit NaN scan", ["fit", str(bad["nan"]), *fit[1:]], "nan.nii.gz"),
        ("fit not NIfTI", ["fit", str(bad["not_nifti"]), *fit[1:]], "notes.txt"),
        ("fit output under a file", [*fit, "-o", str(a_file / "m.disyre")], "-o/--output"),
        ("fit output is a folder", [*fit, "-o", str(tmp_path)], "is a folder"),
        ("fit report under a file", [*fit, "--report", str(a_file / "r")], "--report"),
        ("fit zero batch", [*fit, "--batch-size", "0"], "batch_size"),
        ("fit absurd batch", [*fit, "--batch-size", str(10**9)], "GiB"),
        (
            "fit checkpoint under a file",
            [*fit, "--checkpoint-dir", str(a_file / "c")],
            "checkpoint_dir",
        ),
        ("fit unknown device", [*fit, "--device", "tpu"], "device"),
        (
            "detect missing model",
            ["detect", str(tmp_path / "no.disyre"), healthy[0], "-o", str(tmp_path / "o1")],
            "no model file",
        ),
        (
            "detect damaged model",
            ["detect", str(damaged), healthy[0], "-o", str(tmp_path / "o2")],
            "damaged.disyre",
        ),
        (
            "detect truncated model",
            ["detect", str(cut), healthy[0], "-o", str(tmp_path / "o3")],
            "cut.disyre",
        ),
        (
            "detect output under a file",
            ["detect", str(model), healthy[0], "-o", str(a_file / "o")],
            "-o/--output",
        ),
        (
            "detect truncated scan",
            ["detect", str(model), str(bad["truncated"]), "-o", str(tmp_path / "o4")],
            "truncated.nii.gz",
        ),
        (
            "detect no scans",
            ["detect", str(model), str(tmp_path / "none*.nii.gz"), "-o", str(tmp_path / "o5")],
            "no NIfTI",
        ),
        (
            "evaluate truncated mask",
            ["evaluate", the_map, "--masks", str(bad["truncated"])],
            "truncated.nii.gz",
        ),
        ("evaluate count mismatch", ["evaluate", the_map, "--masks", the_map, the_map], "mask(s)"),
        (
            "evaluate json under a file",
            ["evaluate", the_map, "--masks", the_map, "--json", str(a_file / "r.json")],
            "--json",
        ),
        (
            "evaluate missing map",
            ["evaluate", str(tmp_path / "gone.nii.gz"), "--masks", the_map],
            "gone.nii.gz",
        ),
        ("demo out under a file", ["demo", "--out", str(a_file / "d"), "--steps", "1"], "--out"),
        ("demo zero steps", ["demo", "--out", str(tmp_path / "d"), "--steps", "0"], "n_steps"),
    ]


def test_every_user_error_exits_2_with_a_message_and_no_traceback(scans, tmp_path, capsys):
    cases = _user_error_cases(scans, tmp_path)
    capsys.readouterr()
    failures = []
    for name, argv, expected in cases:
        rc = main(argv)
        err = capsys.readouterr().err
        if rc != 2 or expected not in err or "Traceback" in err:
            failures.append(f"{name}: rc={rc}, stderr={err[-300:]!r}")
    assert not failures, "\n".join(failures)


def test_debug_shows_the_exception(scans, tmp_path):
    with pytest.raises(FileNotFoundError):
        main(["detect", str(tmp_path / "no.disyre"), str(scans[0]), "-o", "x", "--debug"])


def test_user_error_in_a_real_process_prints_no_traceback(tmp_path):
    import subprocess
    import sys

    (tmp_path / "cut.nii.gz").write_bytes(b"\x1f\x8b\x08\x00" + b"\x00" * 40)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "disyre_sk.cli",
            "evaluate",
            str(tmp_path / "cut.nii.gz"),
            "--masks",
            str(tmp_path / "cut.nii.gz"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "cut.nii.gz" in proc.stderr and "Traceback" not in proc.stderr


def test_fit_rescues_the_model_when_the_final_write_fails(scans, tmp_path, monkeypatch, capsys):
    from disyre_sk import DISYREDetector

    target = tmp_path / "model.disyre"
    original = DISYREDetector.save

    def failing(self, path):
        if str(path) == str(target):
            raise OSError(28, "No space left on device")
        return original(self, path)

    monkeypatch.setattr(DISYREDetector, "save", failing)
    rc = main(["fit", *map(str, scans[:2]), "-o", str(target), *_tiny()])
    err = capsys.readouterr().err
    assert rc == 2 and "No space left" in err
    rescued = err.split("saved to '")[1].split("'")[0]
    assert DISYREDetector.load(rescued).image_shape_ == (16, 16, 6)
    Path(rescued).unlink()


def test_fit_cpu_recipe_trains_the_demo_model(scans, tmp_path, capsys):
    from disyre_sk import CombinedDetector, load_model

    model = tmp_path / "model.disyre"
    report = tmp_path / "report"
    ckpt = tmp_path / "ckpt"
    rc = main(
        [
            "fit",
            *map(str, scans[:4]),
            "-o",
            str(model),
            "--recipe",
            "cpu",
            "--report",
            str(report),
            "--checkpoint-dir",
            str(ckpt),
            "--checkpoint-every",
            "1",
            *_tiny("--small-steps", "3"),
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "2 steps + 1 for the dark network + 3 for the small-anomaly network" in out
    combo = load_model(model, device="cpu")
    assert isinstance(combo, CombinedDetector)
    assert [name for name, _ in combo.detectors_] == ["bright", "dark", "foci"]
    bright, dark, foci = (combo.named_detectors_[n] for n in ("bright", "dark", "foci"))
    # The recipe's map settings, the explicit flags on top.
    assert bright.window_size == "slice" and bright.map_standardization == "location"
    assert bright.map_normalization == "intensity" and bright.map_median == 3
    assert bright.patch_size == 16 and bright.n_steps == 2 and bright.widths == (8, 16)
    # One network per sign; the dark one a copy of the bright one with half its steps.
    assert bright.corruption.p_bright == 1.0 and dark.corruption.p_bright == 0.0
    assert dark.n_steps == 1 and dark.widths == bright.widths and dark.map_median == 3
    assert foci.patch_size == 16 and foci.n_steps == 3 and foci.corruption.p_bright == 1.0
    assert combo.weights_.tolist() == [1.0, 1.0, 1.0] and combo.combination == "max"
    # One checkpoint folder and one report per network.
    for name in ("bright", "dark", "foci"):
        assert any((ckpt / name).iterdir())
        assert (report / name / "report.json").is_file()
    out_dir = tmp_path / "maps"
    assert main(["detect", str(model), str(scans[3]), "-o", str(out_dir)]) == 0
    assert len(list(out_dir.glob("*.nii.gz"))) == 1


def test_fit_flags_override_the_detector_defaults(scans, tmp_path):
    from disyre_sk import DISYREDetector, load_model

    model = tmp_path / "model.disyre"
    rc = main(
        [
            "fit",
            *map(str, scans[:2]),
            "-o",
            str(model),
            "--window-size",
            "slice",
            "--map-normalization",
            "intensity",
            "--map-erosion",
            "1",
            "--severities",
            "0.5",
            "--map-flip",
            "--map-symmetry",
            "0.5",
            *_tiny(),
        ]
    )
    assert rc == 0
    det = load_model(model, device="cpu")
    assert isinstance(det, DISYREDetector)
    assert det.window_size == "slice" and det.map_normalization == "intensity"
    assert det.map_erosion == 1 and det.severities == (0.5,) and det.map_flip is True
    assert det.map_symmetry == 0.5 and len(det.symmetry_reference_) == 101
    assert det.map_standardization is None  # not given, no recipe: the default


def test_fit_reference_fraction_holds_scans_out_for_the_references(scans, tmp_path, capsys):
    from disyre_sk import load_model

    model = tmp_path / "model.disyre"
    flags = _tiny("--map-standardization", "location", "--reference-fraction", "0.5")
    assert main(["fit", *map(str, scans[:4]), "-o", str(model), *flags]) == 0
    det = load_model(model, device="cpu")
    assert det.reference_fraction == 0.5 and len(det.history_["reference_samples"]) == 2
    # 'none' turns off what a recipe sets; a word that is no fraction is refused.
    again = tmp_path / "again.disyre"
    assert (
        main(
            [
                "fit",
                *map(str, scans[:2]),
                "-o",
                str(again),
                *_tiny(),
                "--reference-fraction",
                "none",
            ]
        )
        == 0
    )
    assert load_model(again).reference_fraction is None
    with pytest.raises(SystemExit):
        main(["fit", str(scans[0]), "-o", str(again), "--reference-fraction", "half"])
    assert "is not a fraction" in capsys.readouterr().err


@pytest.mark.parametrize(
    "flags, words",
    [
        (["--small-weight", "0.3"], "add --small-anomaly-network"),
        (["--small-anomaly-network"], "--map-standardization location"),
        (["--recipe", "cpu", "--map-standardization", "none"], "--map-standardization location"),
        (["--window-size", "wide"], "--window-size must be 'slice' or a whole number"),
        (["--map-erosion", "-1"], "map_erosion"),
        (["--reference-fraction", "1.5"], "reference_fraction"),
        (["--recipe", "cpu", "--small-weight", "-1"], "weights must be finite, non-negative"),
        (["--recipe", "cpu", "--small-patch-size", "8"], "too small for the specialist"),
        (["--small-p-bright", "0.5"], "add --small-anomaly-network"),
        (["--corruption", "fpi", "--p-bright", "0"], "use --corruption dag"),
        (["--p-bright", "2"], "p_bright must be in [0, 1]"),
        (["--recipe", "cpu", "--small-p-bright", "1.5"], "p_bright must be in [0, 1]"),
        (["--dark-steps", "3"], "add --dark-network"),
        (["--dark-network"], "--map-standardization location"),
        (["--recipe", "cpu", "--corruption", "fpi"], "--no-dark-network"),
        (["--recipe", "cpu", "--dark-weight", "-1"], "weights must be finite, non-negative"),
        (["--n-jobs", "2"], "add --dark-network or --small-anomaly-network"),
        (["--recipe", "cpu", "--n-jobs", "0"], "n_jobs=0 trains nothing"),
    ],
)
def test_fit_refuses_bad_settings_before_reading_scans(tmp_path, capsys, flags, words):
    # The scans do not exist: the settings are refused first, in the user's words.
    rc = main(
        ["fit", str(tmp_path / "none" / "*.nii.gz"), "-o", str(tmp_path / "m.disyre"), *flags]
    )
    err = capsys.readouterr().err
    assert rc == 2 and words in err and "no NIfTI file" not in err


def test_p_bright_flags_set_the_sign_of_each_networks_anomalies(tmp_path):
    from disyre_sk import DISYREDetector, cli
    from disyre_sk.corruption import DAGCorruption

    def model(*flags):
        args = cli.build_parser().parse_args(
            ["fit", "x.nii.gz", "-o", str(tmp_path / "m.disyre"), "--recipe", "cpu", *flags]
        )
        return cli._fit_model(args, verbose=False)[0]

    assert model().n_jobs is None and model("--n-jobs", "2").n_jobs == 2
    either = dict(model("--small-p-bright", "0.5").detectors)
    assert either["foci"].corruption.p_bright == 0.5
    recipe = dict(model().detectors)
    # One network per sign, the small one bright by default.
    assert recipe["bright"].corruption.p_bright == 1.0
    assert recipe["dark"].corruption.p_bright == 0.0
    assert recipe["foci"].corruption.p_bright == 1.0
    # --p-bright sets the first network's DAG; its small network keeps its own sign.
    dark = dict(model("--p-bright", "0", "--no-dark-network").detectors)
    assert dark["shapes"].corruption.p_bright == 0.0 and dark["foci"].corruption.p_bright == 1.0
    assert repr(dark["shapes"].corruption) == repr(DAGCorruption(p_bright=0.0))
    # The recipe with its first network alone (the advice for T1): one detector.
    alone = model("--no-dark-network", "--no-small-anomaly-network", "--p-bright", "0")
    assert isinstance(alone, DISYREDetector) and alone.map_standardization == "location"
    assert alone.map_symmetry == 0.5 and alone.n_steps == 1000
    assert alone.corruption.p_bright == 0.0


def test_calibrate_writes_a_model_with_this_sites_references(scans, tmp_path, capsys):
    from disyre_sk import load_model

    model = tmp_path / "model.disyre"
    flags = _tiny("--map-standardization", "location")
    assert main(["fit", *map(str, scans[:2]), "-o", str(model), *flags]) == 0
    out = tmp_path / "calibrated.disyre"
    rc = main(["calibrate", str(model), *map(str, scans[2:]), "-o", str(out), "--device", "cpu"])
    assert rc == 0, capsys.readouterr().err
    assert "Calibrated on 2 healthy scans" in capsys.readouterr().out
    before, after = load_model(model), load_model(out)
    assert not np.allclose(before.location_mean_, after.location_mean_)
    for a, b in zip(before.network_.parameters(), after.network_.parameters()):
        assert (a == b).all()  # the network is kept
    assert main(["detect", str(out), str(scans[0]), "-o", str(tmp_path / "maps")]) == 0


def test_calibrate_refuses_scans_of_another_shape_and_missing_models(scans, tmp_path, capsys):
    model = _fit_small(scans, tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    for i in range(2):
        data = (np.random.default_rng(i).uniform(0.2, 1, (12, 12, 5)) * 1000).astype(np.int16)
        nib.save(nib.Nifti1Image(data, np.eye(4)), other / f"s{i}.nii.gz")
    out = tmp_path / "c.disyre"
    assert main(["calibrate", str(model), str(other), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--crop" in err and not out.exists()
    assert main(["calibrate", str(model), str(other), "-o", str(out), "--crop"]) == 0
    assert main(["calibrate", str(tmp_path / "none.disyre"), str(other), "-o", str(out)]) == 2
    assert "no model file" in capsys.readouterr().err


def test_evaluate_intervals_leave_out_what_no_volume_defines():
    from disyre_sk.cli import _per_volume_intervals, _scan_level
    from disyre_sk.metrics import PixelMetricAccumulator

    acc = PixelMetricAccumulator()
    rng = np.random.default_rng(0)
    for _ in range(3):  # every foreground voxel lesioned: no volume has a per-volume AUROC
        acc.update(rng.random(20), np.ones(20, bool))
    intervals = _per_volume_intervals(acc, 200)["interval_95"]
    assert set(intervals) == {"average_precision", "best_dice"}
    assert intervals["average_precision"] == pytest.approx([1.0, 1.0])
    # One lesioned volume: nothing to resample.
    single = PixelMetricAccumulator().update(rng.random(20), np.arange(20) < 5)
    assert _per_volume_intervals(single, 200) == {}
    # Scan level needs both kinds of scan.
    assert _scan_level(np.array([1.0, 2.0]), np.array([True, True]), 200) == {}
    both = _scan_level(np.array([1.0, 2.0, 0.5]), np.array([True, True, False]), 200)
    assert both["scan_auroc"] == 1.0
    assert both["scan_auroc_interval_95"] == pytest.approx([1.0, 1.0])
