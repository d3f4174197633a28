"""How much of the demo's false alarms the scans' bias field makes, and what correcting it buys.

    python benchmarks/bias_field.py [--seeds 0 1 2] [--demo-dirs DIR ...] [--n-test 36]
                                    [--no-retrain]
                                    [--out benchmarks/results/bias_field_cpu.md]

The offline cohort gives every subject a smooth multiplicative bias field, as in a scan
no one corrected (``make_brain_cohort``'s ``bias_field``, 1 by default); the data page
asks users to correct it (N4) before training and mapping. With one ``random_state``,
``bias_field=0`` renders the same subjects and the same lesions bias-corrected, so each
arm differs from the demo's in the bias field alone. For each demo model (``disyre demo
--seed S``, or a folder it wrote, given with ``--demo-dirs``; all its networks) three arms
map the demo's 12 test subjects and ``demo_test_size.py``'s independent larger set
(``--n-test`` subjects, ``random_state = seed + 2000``):

- ``uncorrected``: the demo as it is (trained and mapped with the bias field);
- ``corrected test scans``: the demo's model maps the bias-corrected renderings;
- ``corrected throughout``: the demo's networks retrained (same recipe and seed) on
  the bias-corrected renderings of its training subjects, mapping the corrected test
  subjects: what a user who corrects every scan gets (``--no-retrain`` skips it).

Scored with ``held_out.py``'s metrics (pixel AP pooled over the lesioned volumes and per
family, slice AUROC, volume AUROC) beside the two intensity thresholds on the same scans.
Only public API is used.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import md_table
from _demo_models import demo_model_parser, load_demo, run_on_demo_models
from demo_recipes import spread
from held_out import baselines, evaluate
from held_out_references import demo_model
from map_flip import seconds
from map_median import evaluation_sets, report

ARMS = ("uncorrected", "corrected test scans", "corrected throughout")


def rows_of(folder: Path, n_test: int, retrain: bool = True) -> list[dict]:
    """Every arm's rows for one demo folder: DISYRE's, then the thresholds' (``method``)."""
    meta, seed, model = load_demo(folder, whole=True)
    # Each rendering once: both corrected arms map the same corrected subjects, and the
    # retrained arm trains on the corrected demo cohort's own training scans.
    uncorrected = evaluation_sets(meta, n_test)
    corrected = evaluation_sets(meta, n_test, bias_field=0.0)
    arms = [(ARMS[0], uncorrected, model), (ARMS[1], corrected, model)]
    if retrain:
        arms.append((ARMS[2], corrected, None))
    rows = []
    for arm, sets, det in arms:
        t = time.perf_counter()
        if det is None:
            det = demo_model(seed, None)
            det.fit(next(iter(corrected.values())).X_train)  # the demo's cohort is first
        mapped = []
        for name, cohort in sets.items():
            row = {"seed": seed, "test set": name, "scans": arm, "method": "DISYRE"}
            mapped.append({**row, **evaluate(det.decision_map(cohort.X_test), cohort)})
            rows.append(mapped[-1])
            if arm != ARMS[2]:  # the thresholds see the same scans in both corrected arms
                rows += [
                    {**row, "method": method, **evaluate(maps, cohort)}
                    for method, maps in baselines(cohort).items()
                ]
        for r in mapped:
            r["seconds"] = time.perf_counter() - t
        print(f"  seed {seed}, {arm}: done", flush=True)
    return rows


def threshold_table(rows: list[dict]) -> str:
    """The intensity thresholds' min / mean / max over seeds, on uncorrected and corrected
    scans."""
    out = []
    keys = dict.fromkeys((r["test set"], r["scans"], r["method"]) for r in rows)
    for test_set, scans, method in keys:
        if method == "DISYRE":
            continue
        sel = [
            r for r in rows if (r["test set"], r["scans"], r["method"]) == (test_set, scans, method)
        ]
        scans = "uncorrected" if scans == ARMS[0] else "corrected"
        out.append(
            [
                test_set,
                scans,
                method,
                *(spread([r[k] for r in sel]) for k in ("pixel_ap", "slice_auroc", "volume_auroc")),
            ]
        )
    return md_table(
        ["test set", "scans", "threshold", "pixel AP", "slice AUROC", "volume AUROC"], out
    )


def full_report(rows: list[dict]) -> str:
    disyre = [r for r in rows if r["method"] == "DISYRE"]
    arms = [a for a in ARMS if any(r["scans"] == a for r in disyre)]
    return (
        report(disyre, arms, key="scans")
        + "\n\n### intensity thresholds on the same scans: min / mean / max over seeds\n\n"
        + threshold_table(rows)
        + "\n\nSeconds per arm (the retrained arm's training included, and both sets' maps): "
        + seconds(disyre, key="scans")
    )


def main() -> int:
    ap = demo_model_parser(__doc__, "benchmarks/results/bias_field_cpu.md")
    ap.add_argument("--no-retrain", action="store_true", help="skip 'corrected throughout'")
    args = ap.parse_args()
    return run_on_demo_models(
        args,
        "The bias field: the demo's maps on uncorrected and bias-corrected scans",
        lambda folder: rows_of(folder, args.n_test, not args.no_retrain),
        full_report,
    )


if __name__ == "__main__":
    sys.exit(main())
