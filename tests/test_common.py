"""scikit-learn's common estimator checks on one tiny configuration.

The configuration lives here and nowhere else, so every check meets the same detector.
"""

from sklearn.base import clone
from sklearn.utils.estimator_checks import parametrize_with_checks

from disyre_sk import CombinedDetector, DISYREDetector

# The smallest network that still has an encoder, a decoder and attention; a couple of
# steps is enough for the API contract, which is all these checks look at.
TINY_COMMON = DISYREDetector(
    patch_size=8,
    widths=(4, 8),
    n_steps=2,
    batch_size=4,
    severities=(0.5,),
    inference_batch_size=256,
    random_state=0,
)

# Two tiny members on one z-score scale, as a combination needs.
_MEMBER = clone(TINY_COMMON).set_params(map_standardization="location")
TINY_COMBINED = CombinedDetector([("a", _MEMBER), ("b", clone(_MEMBER).set_params(random_state=1))])

# Checks that cannot pass, with the reason.
EXPECTED_FAILED_CHECKS: dict[str, str] = {}
COMBINED_EXPECTED_FAILED_CHECKS = {
    # A map is |x - restoration|, ~2e-3 here, a difference of numbers near 1 whose last
    # float32 bits depend on the batch a convolution runs in; location standardisation
    # divides it by the healthy maps' spread, ~7e-4, so samples differ at 1e-5 with the
    # subset they are mapped in (a single detector standardised by location fails alike;
    # unstandardised, it passes).
    "check_methods_subset_invariance": "z-scores amplify float32 batch-dependent rounding",
}


def _expected_failed_checks(estimator):
    if isinstance(estimator, CombinedDetector):
        return COMBINED_EXPECTED_FAILED_CHECKS
    return EXPECTED_FAILED_CHECKS


@parametrize_with_checks(
    [TINY_COMMON, TINY_COMBINED], expected_failed_checks=_expected_failed_checks
)
def test_sklearn_compatible(estimator, check):
    check(estimator)
