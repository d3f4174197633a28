"""Documentation checks.

Always on, and cheap: every gallery example compiles and has a title, the API reference
lists every public name (and only real ones), the public docstrings pass a focused set
of numpydoc checks (an Examples section with code on every public function, class and
method), and ``docs/check_html.py`` finds broken images. The full Sphinx build runs every
gallery example (minutes on a CPU), so it only runs when ``DISYRE_BUILD_DOCS=1``::

    DISYRE_BUILD_DOCS=1 python -m pytest tests/test_docs.py

CI (``.ci/run``) builds the documentation with the README's command after the tests.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
EXAMPLES = ROOT / "examples"
API_PAGE = DOCS / "api.rst"

PUBLIC_MODULES = (
    "disyre_sk",
    "disyre_sk.corruption",
    "disyre_sk.datasets",
    "disyre_sk.io",
    "disyre_sk.metrics",
    "disyre_sk.nn",
    "disyre_sk.pyod",
    "disyre_sk.report",
    "disyre_sk.schedule",
)
NOT_DOCUMENTED_OBJECTS = {"__version__"}  # a string, not an API object
# Every module is checked, disyre_sk.pyod too: pyod is a test dependency.
SKIPPED_MODULES: set[str] = set()

# numpydoc error codes that fail the check (numpydoc.readthedocs.io/en/latest/validation.html)
CODES = {
    "GL08": "no docstring",
    "SS01": "no summary",
    "SS02": "summary does not start with a capital letter",
    "SS03": "summary does not end with a period",
    "PR01": "a parameter is not documented",
    "PR02": "a documented parameter does not exist",
    "RT01": "no Returns section (for a function that returns something)",
}
# Every public function, class and method: an Examples section with code to run (the
# examples run as doctests in tests/test_doctests.py). EX00 is ours, not numpydoc's.
EXAMPLE_CODES = {"EX01": "no Examples section", "EX00": "no '>>>' line in Examples"}

# Known failures, to be fixed in the package's docstrings (then delete the entry).
KNOWN_FAILURES: dict[str, str] = {}


# --------------------------------------------------------------------------- examples


def _examples():
    return sorted(EXAMPLES.glob("plot_*.py"))


def test_there_are_examples():
    assert len(_examples()) >= 6, [p.name for p in _examples()]
    assert (EXAMPLES / "GALLERY_HEADER.rst").is_file()


@pytest.mark.parametrize("path", _examples(), ids=lambda p: p.name)
def test_example_compiles_and_has_a_title(path):
    source = path.read_text(encoding="utf-8")
    compile(source, str(path), "exec")  # byte-compiles: syntax errors fail here
    docstring = ast.get_docstring(ast.parse(source), clean=True)
    assert docstring, f"{path.name}: sphinx-gallery needs a module docstring first"
    lines = docstring.splitlines()
    assert len(lines) >= 2 and set(lines[1]) == {"="} and len(lines[1]) >= len(lines[0]), (
        f"{path.name}: the docstring must start with a title underlined with '='"
    )


# --------------------------------------------------------------------------- API page


def _api_names() -> list[str]:
    """Qualified names listed in the autosummary blocks of docs/api.rst."""
    names, module, in_block = [], None, False
    for line in API_PAGE.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if stripped.startswith(".. currentmodule::"):
            module, in_block = stripped.split("::", 1)[1].strip(), False
        elif stripped.startswith(".. autosummary::"):
            in_block = True
        elif in_block and stripped and not line.startswith((" ", "\t")):
            in_block = False
        elif in_block and stripped and not stripped.startswith(":"):
            names.append(f"{module}.{stripped}")
    return [name for name in names if name.rsplit(".", 1)[0] not in SKIPPED_MODULES]


def _public_names() -> set[str]:
    names = set()
    for modname in PUBLIC_MODULES:
        if modname in SKIPPED_MODULES:
            continue
        module = importlib.import_module(modname)
        names.update(
            f"{modname}.{name}" for name in module.__all__ if name not in NOT_DOCUMENTED_OBJECTS
        )
    return names


def _resolve(qualname: str):
    parts = qualname.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(qualname)


def test_api_page_names_exist():
    listed = _api_names()
    assert listed, "no autosummary entries found in docs/api.rst"
    missing = []
    for name in listed:
        try:
            _resolve(name)
        except (ImportError, AttributeError):
            missing.append(name)
    assert not missing, f"docs/api.rst lists names that do not exist: {missing}"
    duplicated = sorted({n for n in listed if listed.count(n) > 1})
    assert not duplicated, f"listed twice in docs/api.rst: {duplicated}"


def test_api_page_templates_exist():
    # autosummary falls back, silently, to a bare template that documents no methods
    # when a :template: name does not resolve under templates_path (docs/_templates).
    names = re.findall(r":template:\s*(\S+)", API_PAGE.read_text(encoding="utf-8"))
    assert names, "docs/api.rst names no autosummary template"
    missing = sorted({n for n in names if not (DOCS / "_templates" / n).is_file()})
    assert not missing, f"docs/api.rst names templates that are not in docs/_templates: {missing}"


def test_api_page_lists_every_public_name():
    absent = sorted(_public_names() - set(_api_names()))
    assert not absent, f"public names missing from docs/api.rst: {absent}"


# --------------------------------------------------------------------------- numpydoc


def _documented_objects() -> list[str]:
    """Qualified names of every public function, class and method."""
    out = []
    for qualname in sorted(_public_names()):
        obj = _resolve(qualname)
        out.append(qualname)
        if inspect.isclass(obj):
            for name, member in vars(obj).items():
                if name.startswith("_"):
                    continue
                if inspect.isfunction(member) or isinstance(member, (classmethod, staticmethod)):
                    out.append(f"{qualname}.{name}")
    return out


def _params():
    for qualname in _documented_objects():
        marks = ()
        if qualname in KNOWN_FAILURES:
            marks = pytest.mark.xfail(reason=f"TODO: {KNOWN_FAILURES[qualname]}", strict=False)
        yield pytest.param(qualname, id=qualname, marks=marks)


def _example_errors(qualname: str) -> list[tuple[str, str]]:
    """EX00 when the Examples section exists but shows no code (e.g. 'See save')."""
    import numpydoc.validate as numpydoc_validate  # a declared test dependency

    lines = numpydoc_validate.Validator(
        numpydoc_validate.get_doc_object(_resolve(qualname))
    ).examples
    if lines and not any(line.lstrip().startswith(">>>") for line in lines):
        return [("EX00", "the Examples section has no '>>>' line to run")]
    return []


@pytest.mark.parametrize("qualname", list(_params()))
def test_numpydoc_docstring(qualname):
    from numpydoc.validate import validate  # a declared test dependency

    codes = {**CODES, **EXAMPLE_CODES}
    found = validate(qualname)["errors"] + _example_errors(qualname)
    errors = [(code, msg) for code, msg in found if code in codes]
    assert not errors, f"{qualname}: " + "; ".join(f"{c} {m}" for c, m in errors)


# --------------------------------------------------------------------------- full build


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("DISYRE_BUILD_DOCS") != "1",
    reason="set DISYRE_BUILD_DOCS=1 to build the documentation (runs every example: minutes)",
)
def test_docs_build(tmp_path):
    needed = ("sphinx", "sphinx_gallery", "numpydoc", "pydata_sphinx_theme", "pyod")
    missing = [name for name in needed if importlib.util.find_spec(name) is None]
    if missing:
        pytest.fail(f"the docs build needs {missing}: pip install -e '.[docs]'")
    out = tmp_path / "html"
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html", str(DOCS), str(out)]
    # sphinx-gallery skips an example whose script is unchanged since an earlier build in
    # docs/auto_examples; run them all, so a package change that breaks one fails here.
    cmd += ["-D", "sphinx_gallery_conf.run_stale_examples=True"]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    log = result.stdout[-6000:] + result.stderr[-6000:]
    assert result.returncode == 0, log
    assert (out / "index.html").is_file()
    assert (out / "api.html").is_file()
    for example in _examples():
        page = out / "auto_examples" / f"{example.stem}.html"
        assert page.is_file(), f"no gallery page for {example.name}"
        images = re.findall(rf"sphx_glr_{re.escape(example.stem)}_\d{{3}}\.png", page.read_text())
        assert images, f"{example.name} produced no figure"
    for qualname in _documented_objects():  # every public name and method has an entry
        page = out / "gen_modules" / f"{qualname}.html"
        if not page.is_file():  # a method: documented on its class's page
            page = out / "gen_modules" / f"{qualname.rsplit('.', 1)[0]}.html"
        assert f'id="{qualname}"' in page.read_text(), f"{qualname} is not documented"
    problems = _check_html().check_site(out, EXAMPLES)
    assert not problems, "\n".join(problems)


# --------------------------------------------------------------------------- HTML check


def _check_html():
    """docs/check_html.py, which CI runs on the built site, imported as a module."""
    spec = importlib.util.spec_from_file_location("check_html", DOCS / "check_html.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _png(path: Path, blank: bool = False) -> None:
    import numpy as np
    from matplotlib import image as mpimg

    pixels = np.ones((4, 4, 3)) if blank else np.linspace(0, 1, 48).reshape(4, 4, 3)
    mpimg.imsave(path, pixels)


def test_check_html_passes_a_good_site(tmp_path):
    (tmp_path / "_images").mkdir()
    (tmp_path / "auto_examples").mkdir()
    (tmp_path / "examples").mkdir()
    (tmp_path / "examples" / "plot_a.py").write_text('"""A\n=\n"""\n')
    _png(tmp_path / "_images" / "sphx_glr_plot_a_001.png")
    (tmp_path / "index.html").write_text('<img src="_images/sphx_glr_plot_a_001.png">')
    (tmp_path / "auto_examples" / "plot_a.html").write_text(
        '<img alt="fig" src="../_images/sphx_glr_plot_a_001.png" class="sphx-glr-single-img"/>'
        '<img src="data:image/png;base64,AAAA">'
    )
    assert _check_html().check_site(tmp_path, tmp_path / "examples") == []
    assert _check_html().main([str(tmp_path), "--examples", str(tmp_path / "examples")]) == 0


def test_check_html_finds_every_kind_of_problem(tmp_path):
    (tmp_path / "_images").mkdir()
    (tmp_path / "auto_examples").mkdir()
    (tmp_path / "examples").mkdir()
    for stem in ("plot_a", "plot_b", "plot_c"):
        (tmp_path / "examples" / f"{stem}.py").write_text('"""A\n=\n"""\n')
    (tmp_path / "_images" / "empty.png").write_bytes(b"")
    (tmp_path / "_images" / "junk.png").write_bytes(b"not a png")
    _png(tmp_path / "_images" / "sphx_glr_plot_a_001.png", blank=True)
    (tmp_path / "index.html").write_text(
        '<img src="_images/gone.png"><img src="_images/empty.png"><img src="_images/junk.png">'
        '<img src="https://example.org/logo.png"><img alt="x">'
    )
    (tmp_path / "auto_examples" / "plot_a.html").write_text(
        '<img src="../_images/sphx_glr_plot_a_001.png">'
    )
    (tmp_path / "auto_examples" / "plot_b.html").write_text("<p>no figure</p>")
    problems = "\n".join(_check_html().check_site(tmp_path, tmp_path / "examples"))
    for expected in (
        'gone.png"> -> missing file',
        'empty.png"> -> empty file',
        'junk.png"> -> not a readable image',
        'logo.png"> is remote',
        "<img> without src",
        'sphx_glr_plot_a_001.png"> -> blank image',
        "plot_a.html: the example shows no figure",
        "plot_b.html: the example shows no figure",
        "plot_c.html: missing",
    ):
        assert expected in problems, f"{expected!r} not reported in:\n{problems}"
    assert _check_html().main([str(tmp_path), "--examples", str(tmp_path / "examples")]) == 1


def test_check_html_docstring_examples():
    import doctest

    result = doctest.testmod(_check_html(), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
