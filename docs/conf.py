"""Sphinx configuration of the disyre_sk documentation.

Build (warnings are errors; the gallery examples run, a few minutes on a CPU)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html

Add ``-D plot_gallery=0`` to skip running the examples (a build in seconds; the guide's
embedded gallery figures are then missing, without a warning).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the checkout's package, even if not installed

import disyre_sk  # noqa: E402

# -- Project -------------------------------------------------------------------------
project = "disyre_sk"
author = "disyre_sk developers"
copyright = "disyre_sk developers, BSD-3-Clause"
release = disyre_sk.__version__
version = ".".join(release.split(".")[:2])

# -- Extensions ----------------------------------------------------------------------
# No intersphinx: the documentation builds without network access.
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

templates_path = ["_templates"]
source_suffix = {".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = [
    "_build",
    "**.ipynb_checkpoints",
    "auto_examples/*.ipynb",
    "auto_examples/*.py",
    "auto_examples/*.zip",
    "auto_examples/*.md5",
    "user_guide/_import_layers.rst",  # included by architecture.rst, not a page
]
pygments_style = "sphinx"
default_role = "literal"

# -- autodoc / autosummary / numpydoc -------------------------------------------------
autosummary_generate = True
autosummary_imported_members = True
autodoc_typehints = "none"  # numpydoc sections carry the types
autodoc_member_order = "bysource"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True
numpydoc_xref_param_type = False

# -- sphinx-gallery ------------------------------------------------------------------
sphinx_gallery_conf = {
    "examples_dirs": str(HERE.parent / "examples"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "ignore_pattern": r"__init__\.py",
    "within_subsection_order": "FileNameSortKey",
    "backreferences_dir": "gen_modules/backreferences",
    "doc_module": ("disyre_sk",),
    "reference_url": {"disyre_sk": None},
    "remove_config_comments": True,
    "download_all_examples": False,
    "show_memory": False,
    "min_reported_time": 0,
    "matplotlib_animations": False,
    "image_scrapers": ("matplotlib",),
    "default_thumb_file": None,
    "capture_repr": ("_repr_html_", "__repr__"),
    # A failing example fails the build (the default); say which one loudly.
    "only_warn_on_example_error": False,
    "abort_on_example_error": False,
}

# -- HTML ----------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"disyre_sk {release}"
html_static_path = []
html_theme_options = {
    "navigation_depth": 2,
    "show_toc_level": 2,
    "secondary_sidebar_items": ["page-toc"],
    "navbar_end": ["theme-switcher", "navbar-icon-links"],
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
}
html_context = {"default_mode": "light"}
html_show_sourcelink = False

# The hostile-input notes are Markdown, written beside these pages. Without a Markdown
# parser (myst-parser is not a docs dependency) Sphinx ignores .md sources, so the file
# is copied into the site as is and linked from the user guide.
_HOSTILE = HERE / "hostile_input.md"
html_extra_path = [str(_HOSTILE)] if _HOSTILE.is_file() else []

# The examples run in this process: keep them quiet and headless.
os.environ.setdefault("MPLBACKEND", "Agg")
# They train tiny networks, which one thread runs nearly as fast as several; on a busy
# or shared machine, torch's default of one thread per core made them many times slower
# (threads waiting on each other), so the build's time is kept predictable, as the tests
# do (tests/conftest.py). An explicit OMP_NUM_THREADS wins.
if "OMP_NUM_THREADS" not in os.environ:
    import torch

    torch.set_num_threads(1)


def _write_cli_help() -> None:
    """Write ``disyre [command] --help`` to gen_modules/cli/, for the command-line page."""
    import argparse

    from disyre_sk.cli import build_parser

    os.environ["COLUMNS"] = "88"  # argparse wraps to the terminal width: keep it fixed
    parser = build_parser()
    texts = {"disyre": parser.format_help()}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            texts.update({name: sub.format_help() for name, sub in action.choices.items()})
    folder = HERE / "gen_modules" / "cli"
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in texts.items():
        path = folder / f"{name}.txt"
        if not path.is_file() or path.read_text() != text:  # unchanged: no rebuild
            path.write_text(text)


_write_cli_help()


def _quiet_missing_gallery_images(app, config) -> None:
    """With ``-D plot_gallery=0`` the gallery figures embedded in the guide do not exist."""
    if str(config.plot_gallery).strip().lower() in ("0", "false", "no", "off", "none"):
        config.suppress_warnings = [*config.suppress_warnings, "image.not_readable"]


def _skip_metadata_request_setters(app, what, name, obj, skip, options):
    """Leave out scikit-learn's generated ``set_<method>_request`` (metadata routing).

    scikit-learn adds them to estimator classes whose methods take extra arguments (here
    PyOD's ``predict(X, return_confidence=False)``); they are scikit-learn's API,
    documented there, and their docstrings link into scikit-learn's own glossary.
    """
    if name.startswith("set_") and name.endswith("_request"):
        return True
    return None


def _write_import_layers(app, config):
    """Draw the architecture page's table from the code, at every build."""
    sys.path.insert(0, str(HERE.parent / "scripts"))
    import import_layers

    graph = import_layers.graph()
    if import_layers.cycles(graph):
        raise RuntimeError("the package has an import cycle: see scripts/import_layers.py")
    (HERE / "user_guide" / "_import_layers.rst").write_text(import_layers.rst(graph))


def setup(app):
    app.connect("config-inited", _write_import_layers)
    app.connect("config-inited", _quiet_missing_gallery_images)
    app.connect("autodoc-skip-member", _skip_metadata_request_setters)
