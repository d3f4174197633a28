"""``benchmarks/stream_detect.py`` writes its table even when the budget skips a variant."""

import sys

from _benchmarks import load_benchmark


def test_a_variant_the_budget_skipped_is_reported_not_fatal(tmp_path, monkeypatch):
    bench = load_benchmark("stream_detect")
    out = tmp_path / "stream.md"
    argv = ["stream_detect.py", "--n-scans", "2", "--shape", "6", "24", "24"]
    # A budget already spent: only the variants the speed-up needs run, once each.
    monkeypatch.setattr(sys, "argv", [*argv, "--budget-s", "1e-6", "--out", str(out)])
    assert bench.main() == 0
    text = out.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| streaming")]
    assert len(rows) == 2
    assert "not run (time budget)" in rows[1] and "not run" not in rows[0]
    assert "| naive loop" in text and "1.00×" in text
