"""Datasets: local-folder loaders for public brain-MRI collections, and the demo cohort.

Nothing here downloads: BraTS, ATLAS, IXI and CamCAN need registration or a data-use
agreement, so users point these loaders at their own local copy. Each loader returns a
:class:`sklearn.utils.Bunch` of file paths (and, with ``load=True``, arrays in the
package's ``(n, Z, Y, X)`` convention, see :mod:`disyre_sk.io`). When a folder does not
look like the expected layout, the error says what was expected and what was found.

The offline demo cohort built from the real anatomy shipped with the package lives here
too: :func:`make_brain_cohort`, :func:`load_brain_anatomy`, :func:`cohort_slices`.
"""

from ._cohort import cohort_slices, load_brain_anatomy, make_brain_cohort
from ._loaders import load_atlas, load_brats, load_camcan, load_ixi

__all__ = [
    "cohort_slices",
    "load_atlas",
    "load_brain_anatomy",
    "load_brats",
    "load_camcan",
    "load_ixi",
    "make_brain_cohort",
]
