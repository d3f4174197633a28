"""Print the lowest versions ``pyproject.toml`` admits, as pip requirements.

    pip install $(python scripts/declared_floors.py --skip torch)

Each ``name>=X`` dependency becomes ``name==X``, so that a CI job installs exactly the
floors the package declares and runs its tests there: a floor that the code has outgrown
(an API it calls that the floor lacks) then fails. ``--skip`` leaves a dependency to be
installed separately (torch: its CPU build of the floor is not on PyPI, whose builds of
that release pull several GB of CUDA libraries).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, as a package
    import tomli as tomllib

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def floors(pyproject: Path = PYPROJECT, skip: tuple[str, ...] = ()) -> list[str]:
    """``name==floor`` for each runtime dependency with a ``>=`` floor."""
    deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    out = []
    for dep in deps:
        match = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)\s*>=\s*([0-9][0-9A-Za-z.]*)\s*", dep)
        if match is None:
            raise ValueError(f"{dep!r} has no plain '>=' floor; state one")
        name, version = match.groups()
        if name.lower() not in {s.lower() for s in skip}:
            out.append(f"{name}=={version}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--skip", nargs="*", default=[], help="dependencies to leave out")
    args = ap.parse_args(argv)
    print(" ".join(floors(skip=tuple(args.skip))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
