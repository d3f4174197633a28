"""scikit-learn's common estimator checks on one tiny configuration.

The configuration lives here and nowhere else, so every check meets the same detector.
"""

from sklearn.utils.estimator_checks import parametrize_with_checks

from disyre_sk import DISYREDetector

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

# Checks that cannot pass, with the reason.
EXPECTED_FAILED_CHECKS: dict[str, str] = {}


def _expected_failed_checks(estimator):
    return EXPECTED_FAILED_CHECKS


@parametrize_with_checks([TINY_COMMON], expected_failed_checks=_expected_failed_checks)
def test_sklearn_compatible(estimator, check):
    check(estimator)
