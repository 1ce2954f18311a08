"""cl_toolkit.stats against numpy / scipy: seed spread and the within-noise verdict."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from cl_toolkit.stats import compare, mean_std, within_noise


def test_mean_std_matches_numpy():
    x = [52.0, 54.1, 49.7, 51.2]
    m, s = mean_std(x)
    assert m == pytest.approx(np.mean(x)) and s == pytest.approx(np.std(x, ddof=1))
    assert mean_std([3.0]) == (3.0, 0.0)


def test_standard_error_is_welchs():
    a, b = [1.0, 2.0, 3.5], [2.0, 4.0, 4.5]
    # Welch's t statistic = difference / the standard error used here
    t = sps.ttest_ind(a, b, equal_var=False).statistic
    se = (np.mean(a) - np.mean(b)) / t
    text = compare(a, b)
    assert text.startswith(f"{np.mean(a) - np.mean(b):+.2f} ± {se:.2f}")


def test_verdicts():
    noise = [50.0, 51.0, 52.0]
    assert within_noise(noise, [50.5, 51.5, 52.5])
    assert compare(noise, [50.5, 51.5, 52.5]).endswith("(within noise)")
    assert not within_noise(noise, [60.0, 61.0, 62.0])
    assert compare([60.0, 61.0, 62.0], noise).endswith("(outside noise)")
    # the threshold is k standard errors
    se = math.sqrt(2 / 3)
    assert within_noise(noise, [x + 1.9 * se for x in noise]) and not within_noise(noise, [x + 2.1 * se for x in noise])


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: mean_std([]), "at least one value"),
        (lambda: within_noise([1.0], [1.0, 2.0]), "at least 2 seeds each.*got 1 and 2"),
        (lambda: within_noise([1.0, 2.0], [1.0, 2.0], k=0), "k must be positive, got 0"),
    ],
)
def test_errors_name_the_problem(call, match):
    with pytest.raises(ValueError, match=match):
        call()
