"""Check a built HTML site: every image is there, every gallery example shows a figure.

Run it after the Sphinx build::

    python docs/check_html.py docs/_build/html

It parses every page and fails (exit status 1, one line per problem) when an ``<img>``
points at a missing or empty file or at a file that is not a readable image, when a
figure is blank (one flat colour, as an empty plot saved to PNG is), when a gallery
example in ``examples/`` has no page, or when a gallery page has no figure. Only the
standard library and matplotlib (a dependency of the package) are used.
"""

from __future__ import annotations

import argparse
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

ROOT = Path(__file__).resolve().parents[1]
GALLERY = "auto_examples"
# sphinx-gallery names the figures of examples/plot_x.py sphx_glr_plot_x_001.png, ...
FIGURE_PREFIX = "sphx_glr_"
RASTER = {".png", ".jpg", ".jpeg", ".gif"}


class _ImageSources(HTMLParser):
    """Collects the ``src`` of every ``<img>`` of one page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.sources: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.sources.append(dict(attrs).get("src") or "")


def image_sources(page: Path) -> list[str]:
    """The ``src`` attribute of every ``<img>`` on an HTML page, in order.

    Parameters
    ----------
    page : pathlib.Path
        An HTML file.

    Returns
    -------
    sources : list of str
        One entry per ``<img>``; an ``<img>`` without ``src`` gives ``''``.

    Examples
    --------
    >>> import tempfile
    >>> page = Path(tempfile.mkdtemp()) / "page.html"
    >>> _ = page.write_text('<p><img src="a.png" alt="a"><img alt="no source"></p>')
    >>> image_sources(page)
    ['a.png', '']
    """
    parser = _ImageSources()
    parser.feed(page.read_text(encoding="utf-8", errors="replace"))
    parser.close()
    return parser.sources


def _image_problem(path: Path) -> str | None:
    """Why ``path`` is not a usable image, or None."""
    if not path.is_file():
        return "missing file"
    if path.stat().st_size == 0:
        return "empty file"
    if path.suffix.lower() not in RASTER:
        return None  # SVG and friends: present and non-empty is what we can check cheaply
    from matplotlib import image as mpimg

    try:
        pixels = mpimg.imread(path)
    except Exception as exc:  # a truncated or mislabelled file
        return f"not a readable image ({exc})"
    if pixels.size == 0 or float(pixels.max()) == float(pixels.min()):
        return "blank image (a single colour)"
    return None


def check_site(html_dir: Path, examples_dir: Path | None = None) -> list[str]:
    """Problems found in a built HTML site; an empty list means it passed.

    Parameters
    ----------
    html_dir : pathlib.Path
        The Sphinx HTML output folder (the one holding ``index.html``).
    examples_dir : pathlib.Path, optional
        Folder of the gallery's ``plot_*.py`` scripts; each needs a page under
        ``auto_examples/`` with at least one figure. ``None`` checks only the gallery
        pages that exist.

    Returns
    -------
    problems : list of str
        One human-readable line per problem.

    Examples
    --------
    >>> import tempfile
    >>> site = Path(tempfile.mkdtemp())
    >>> _ = (site / "index.html").write_text('<img src="_images/missing.png">')
    >>> check_site(site)
    ['index.html: <img src="_images/missing.png"> -> missing file']
    """
    html_dir = Path(html_dir)
    problems: list[str] = []
    if not (html_dir / "index.html").is_file():
        return [f"{html_dir}: no index.html (build the docs first)"]
    checked: dict[Path, str | None] = {}
    figures_per_page: dict[str, int] = {}
    for page in sorted(html_dir.rglob("*.html")):
        name = page.relative_to(html_dir).as_posix()
        n_figures = 0
        for src in image_sources(page):
            parts = urlsplit(src)
            if not src:
                problems.append(f"{name}: <img> without src")
                continue
            if parts.scheme == "data":
                continue
            if parts.scheme or parts.netloc:
                # The site must render offline, as it is built.
                problems.append(f'{name}: <img src="{src}"> is remote')
                continue
            target = (page.parent / unquote(parts.path)).resolve()
            if target not in checked:
                checked[target] = _image_problem(target)
            if checked[target] is not None:
                problems.append(f'{name}: <img src="{src}"> -> {checked[target]}')
            elif target.name.startswith(FIGURE_PREFIX) and "thumb" not in target.name:
                n_figures += 1
        figures_per_page[name] = n_figures

    gallery_pages = {
        Path(name).stem
        for name in figures_per_page
        if name.startswith(f"{GALLERY}/") and Path(name).stem.startswith("plot_")
    }
    expected = set(gallery_pages)
    if examples_dir is not None:
        expected = {p.stem for p in Path(examples_dir).glob("plot_*.py")}
        if not expected:
            problems.append(f"{examples_dir}: no plot_*.py examples found")
        for stem in sorted(expected - gallery_pages):
            problems.append(f"{GALLERY}/{stem}.html: missing (the example was not built)")
    for stem in sorted(expected & gallery_pages):
        if figures_per_page[f"{GALLERY}/{stem}.html"] == 0:
            problems.append(f"{GALLERY}/{stem}.html: the example shows no figure")
    return problems


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status.

    Parameters
    ----------
    argv : list of str, optional
        Arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    status : int
        0 when the site passed, 1 otherwise.

    Examples
    --------
    >>> import tempfile
    >>> main([tempfile.mkdtemp()])  # an empty folder is not a built site
    1
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "html_dir",
        nargs="?",
        default=str(ROOT / "docs" / "_build" / "html"),
        help="the Sphinx HTML output (default: docs/_build/html)",
    )
    parser.add_argument(
        "--examples",
        default=str(ROOT / "examples"),
        help="folder of the gallery's plot_*.py scripts (default: examples/)",
    )
    args = parser.parse_args(argv)
    problems = check_site(Path(args.html_dir), Path(args.examples))
    for line in problems:
        print(line, file=sys.stderr)
    if problems:
        print(f"{len(problems)} problem(s) in {args.html_dir}", file=sys.stderr)
        return 1
    print(f"{args.html_dir}: every image resolves, every gallery example has a figure")
    return 0


if __name__ == "__main__":
    sys.exit(main())
