"""Every measured figure in the README, the user guide, the benchmarks README and the
docstrings can be found in a results file cited beside it.

A figure is a number with a unit of time, throughput, memory or speed-up (``s``,
``s/volume``, ``windows/s``, ``steps/s``, ``GiB``, ``×`` …), a percentage, or a value of
AP, Dice or AUROC. It must sit in a section (the text between two headings; a docstring
is one section) that cites ``benchmarks/results/<file>`` or ``results/<file>``, and
appear, as written, in one of the cited files or the JSON beside it. Figures from the
literature cite their paper instead. A few numbers look like figures but are not
measurements (settings, sizes of data, figure widths): ``NOT_MEASUREMENTS`` lists each,
with the reason.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

_NUM = r"(?<![\w.,])[-+−]?\d[\d,]*(?:\.\d+)?"
_UNIT = (
    r"(?:s/volume|s / volume|windows/s|windows / s|steps/s|steps / s|s/step|s / step"
    r"|GiB|GB|MB|ms|min|h|s|%|×)"
)
FIGURE = re.compile(
    rf"(?P<a>{_NUM})\s?{_UNIT}(?![\w/])"
    rf"|(?:\bAP|\bDice|\bAUROC)(?:\s(?:of|=|:|about|is|was))?\s(?P<b>{_NUM})"
)
CITE = re.compile(r"(?:benchmarks/)?results/(?:archive/)?([\w.-]+\.(?:md|json|log))")
LITERATURE = re.compile(r"arXiv|doi\.org|et al\.|MICCAI|\(20\d\d\)|paper's Table|Table \d")
HEADING = re.compile(r"\n(?=[^\n]+\n[=\-~^\"]{3,}\n)|\n(?=#{1,4} )")

# (file, text around the number, reason): numbers in the text that are not measurements.
NOT_MEASUREMENTS = [
    (
        "",
        r"\b(?:1|5|10|25|75|95|98|99|100) ?%",
        "a setting or a definition (a quantile, an overlap, a share of the data)",
    ),
    ("", r":(?:width|scale): \d+ ?%", "a figure's display width"),
    ("", r"\d+ ?× ?\d+", "an image size"),
    ("", r"0th.98th", "a normalisation setting"),
    ("persistence.rst", r"25 GB", "the size a crafted file asks for, refused before allocation"),
    ("gpu.rst", r"a 24 GiB card", "the memory of a kind of graphics card"),
    ("gpu.rst", r"5 GB", "the size of a data set held on the device, computed from its shape"),
    ("reproducing.rst", r"(?:11|50) GB", "the size of a public data set"),
    ("benchmarks/README.md", r"50 GB", "the size of a public data set"),
    ("_cohort.py", r"below 15 %|\s30 % of a synthetic", "settings of the synthetic cohort"),
    ("_demo.py", r"least 2 % foreground", "the slice-selection setting of the evaluation"),
    (
        "benchmarks/README.md",
        r"(?:budget-s`? \(|default )[^)]*",
        "time budgets the scripts take as options",
    ),
    ("benchmarks/README.md", r"≤ 360 s|560 s|130 s|45 s above", "time limits gpu_check.sh sets"),
]


def _docstrings(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    nodes = [
        tree,
        *(
            n
            for n in ast.walk(tree)
            if isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))
        ),
    ]
    docs = [d for n in nodes if (d := ast.get_docstring(n))]
    # Examples print what the code returns on toy input, not measurements.
    return [re.split(r"\nExamples\n-{3,}\n", d)[0] for d in docs]


def sections() -> list[tuple[str, str]]:
    """``(file, text)`` of every section of every document that may quote a figure."""
    out = []
    docs = [ROOT / "README.md", ROOT / "benchmarks" / "README.md"]
    docs += [
        p
        for p in sorted((ROOT / "docs").rglob("*.rst"))
        if not {"auto_examples", "gen_modules", "_build"} & set(p.parts)
        and p.name != "sg_execution_times.rst"
    ]
    for path in docs:
        name = str(path.relative_to(ROOT))
        out += [(name, part) for part in HEADING.split(path.read_text())]
    for path in sorted((ROOT / "disyre_sk").rglob("*.py")):
        name = str(path.relative_to(ROOT))
        out += [(name, doc) for doc in _docstrings(path)]
    return out


def _exempt(name: str, text: str, start: int, end: int) -> bool:
    return any(
        m.start() <= start and end <= m.end()
        for where, pattern, _ in NOT_MEASUREMENTS
        if where in name
        for m in re.finditer(pattern, text)
    )


def _value(number: str) -> tuple[float, int]:
    plain = number.replace("−", "-").replace(",", "").lstrip("+")
    decimals = len(plain.split(".")[1]) if "." in plain else 0
    return abs(float(plain)), decimals


def _in(number: str, values: set[float]) -> bool:
    """Whether the corpus holds the number, exactly or as the value it was rounded from."""
    value, decimals = _value(number)
    half = 0.5 * 10.0**-decimals + 1e-12
    return any(abs(v - value) <= half for v in values)


def problems() -> list[str]:
    found = []
    cache: dict[str, str] = {}
    for name, text in sections():
        figures = []
        for m in FIGURE.finditer(text):
            number = m.group("a") or m.group("b")
            start = m.start("a") if m.group("a") else m.start("b")
            if not _exempt(name, text, start, start + len(number)):
                figures.append((number, m.group(0)))
        if not figures:
            continue
        cited = set(CITE.findall(text))
        if not cited:
            if LITERATURE.search(text):
                continue
            found += [f"{name}: {shown!r} cites no results file" for _, shown in figures]
            continue
        corpus = ""
        for file in cited:
            for candidate in (RESULTS / file, RESULTS / "archive" / file):
                for path in (
                    candidate,
                    candidate.with_suffix(".json"),
                    candidate.with_suffix(".log"),
                ):
                    if path.is_file():
                        corpus += cache.setdefault(str(path), path.read_text())
        if not corpus:
            found.append(f"{name}: cites {sorted(cited)}, none of which exists")
            continue
        values = {abs(float(v.replace(",", ""))) for v in re.findall(r"\d[\d,]*(?:\.\d+)?", corpus)}
        for number, shown in figures:
            if not _in(number, values):
                found.append(f"{name}: {shown!r} is not in {sorted(cited)}")
    return found


def test_scanner_finds_figures_and_their_sources():
    # The scanner itself: a made-up figure is caught, a cited one passes.
    made_up = FIGURE.findall("maps a volume in 1.7 s and reaches AP 0.93")
    assert len(made_up) == 2
    assert CITE.findall("see benchmarks/results/demo_cpu.md") == ["demo_cpu.md"]
    assert _in("2,260", {2260.0}) and _in("3.5", {3.49}) and not _in("3.5", {3.44})


def test_every_figure_is_in_the_results_file_it_cites():
    found = problems()
    assert not found, f"{len(found)} figures without a source:\n" + "\n".join(found)
