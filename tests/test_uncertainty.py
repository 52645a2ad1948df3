"""Calibrators fitted on validation rows and uncertainty metrics (biomol_dl.uncertainty), on
synthetic data whose truth is known and on small cases computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from biomol_dl import uncertainty as U


def _heteroscedastic(rng, n):
    """y = x + noise with sd 0.1 + |x|: the sd is known, and differs a lot between rows."""
    x = rng.uniform(-2, 2, n)
    sd = 0.1 + np.abs(x)
    return x + rng.normal(0, sd), x, sd


# ------------------------------------------------------------------------------ conformal


@pytest.mark.parametrize("normalized", [False, True])
@pytest.mark.parametrize("coverage", [0.8, 0.9])
def test_conformal_interval_holds_nominal_coverage_on_2000_draws(normalized, coverage):
    """Fitted on 2,000 draws, scored on 20,000 fresh ones: the sd of the observed coverage is
    about 0.01 (calibration and test binomial noise together), the tolerance three times that."""
    rng = np.random.default_rng(0)
    y, pred, sd = _heteroscedastic(rng, 2000)
    fitted = U.fit_conformal_interval(y, pred, sd if normalized else None, coverage=coverage)
    y, pred, sd = _heteroscedastic(rng, 20000)
    lo, hi = fitted.interval(pred, sd if normalized else None)
    got = U.interval_metrics(y, lo, hi)["interval_coverage"]
    assert abs(got - coverage) < 0.03


def test_normalized_interval_is_narrower_where_the_sd_is_informative():
    rng = np.random.default_rng(1)
    y, pred, sd = _heteroscedastic(rng, 2000)
    absolute = U.fit_conformal_interval(y[:1000], pred[:1000])
    normalized = U.fit_conformal_interval(y[:1000], pred[:1000], sd[:1000])
    w_abs = U.interval_metrics(y[1000:], *absolute.interval(pred[1000:]))["interval_width"]
    w_norm = U.interval_metrics(y[1000:], *normalized.interval(pred[1000:], sd[1000:]))
    assert w_norm["interval_width"] < 0.85 * w_abs


def test_conformal_finite_sample_correction_over_many_small_calibrations():
    """Averaged over 400 calibrations on 19 rows, coverage lies in [0.9, 0.9 + 1/20]: the
    ceil((n+1) * 0.9)-th score, not the plain 90 % quantile (which would cover about 0.86)."""
    rng = np.random.default_rng(2)
    errors = rng.normal(size=(400, 19 + 200))
    covered = []
    for row in errors:
        q = U.conformal_quantile(np.abs(row[:19]), 0.9)
        covered.append(np.mean(np.abs(row[19:]) <= q))
    assert 0.895 <= np.mean(covered) <= 0.96


def test_conformal_quantile_by_hand():
    assert U.conformal_quantile([4, 1, 3, 2], 0.5) == 3  # ceil(5 * 0.5) = 3rd smallest
    assert U.conformal_quantile([4, 1, 3, 2], 0.9) == math.inf  # ceil(4.5) = 5 > 4 rows
    assert U.conformal_quantile(list(range(1, 10)), 0.9) == 9
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        U.conformal_quantile([1.0], 1.0)


def test_conformal_sets_cover_on_synthetic_multiclass():
    rng = np.random.default_rng(3)
    n, k = 2000, 4
    logits = rng.normal(0, 2, size=(n, k))
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y = np.array([rng.choice(k, p=p) for p in proba])
    sets = U.fit_conformal_sets(y[:1000], proba[:1000], 0.9)
    got = U.set_metrics(y[1000:], sets.sets(proba[1000:]))
    assert abs(got["set_coverage"] - 0.9) < 0.03
    assert 1 <= got["set_size"] < k


# ------------------------------------------------------------------------------ calibrators


def test_variance_scale_recovers_a_known_factor():
    rng = np.random.default_rng(4)
    y, pred, sd = _heteroscedastic(rng, 2000)
    scale = U.fit_variance_scale(y, pred, sd / 2)
    assert abs(scale.scale - 2) < 0.1
    before = U.sd_metrics(y, pred, sd / 2)
    after = U.sd_metrics(y, pred, scale.apply(sd / 2))
    assert after["nll"] < before["nll"]
    assert after["miscalibration_area"] < 0.02 < before["miscalibration_area"]


def _overconfident_binary(rng, n, factor=3.0):
    z = rng.normal(0, 1.5, n)
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-z))).astype(float)
    return y, 1 / (1 + np.exp(-factor * z))


@pytest.mark.parametrize("method", U.PROBABILITY_CALIBRATORS)
def test_probability_calibrators_fix_overconfidence(method):
    rng = np.random.default_rng(5)
    y, p = _overconfident_binary(rng, 4000)
    cal = U.fit_probability_calibrator(y[:2000], p[:2000], method)
    before, after = U.ece(y[2000:], p[2000:]), U.ece(y[2000:], cal.apply(p[2000:]))
    assert after < 0.04 < before
    assert U.log_loss(y[2000:], cal.apply(p[2000:])) < U.log_loss(y[2000:], p[2000:])
    if method == "temperature":
        assert abs(cal.temperature - 3) < 0.3
    grid = np.linspace(0.01, 0.99, 50)
    assert np.all(np.diff(cal.apply(grid)) >= 0)  # every map keeps the ranking


def test_multiclass_temperature():
    rng = np.random.default_rng(6)
    n, k = 3000, 3
    logits = rng.normal(0, 1, size=(n, k))
    true = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y = np.array([rng.choice(k, p=p) for p in true])
    sharp = np.exp(2 * logits) / np.exp(2 * logits).sum(axis=1, keepdims=True)
    cal = U.fit_probability_calibrator(y, sharp, "temperature")
    assert abs(cal.temperature - 2) < 0.2
    assert U.ece(y, cal.apply(sharp)) < U.ece(y, sharp)
    with pytest.raises(ValueError, match="binary probabilities only"):
        U.fit_probability_calibrator(y, sharp, "isotonic")


# ------------------------------------------------------------------------------ never test rows


def test_calibration_never_reads_test_labels():
    """Poisoned test labels change the scores, never what was fitted."""
    rng = np.random.default_rng(7)
    y, pred, sd = _heteroscedastic(rng, 400)
    val = {"y_true": y[:200], "y_pred": pred[:200], "sd": sd[:200]}
    test = {"y_true": y[200:], "y_pred": pred[200:], "sd": sd[200:]}
    poisoned = {**test, "y_true": test["y_true"] * 100 + 7}
    settings = U.Settings()
    m1, f1 = U.calibrate_regression(val, test, settings)
    m2, f2 = U.calibrate_regression(val, poisoned, settings)
    assert f1 == f2
    assert m1["interval_coverage"] != m2["interval_coverage"]

    yb, pb = _overconfident_binary(rng, 400)
    for method in U.PROBABILITY_CALIBRATORS:
        s = U.Settings(probability=method)
        val = {"y_true": yb[:200], "proba": pb[:200]}
        m1, f1 = U.calibrate_classification(val, {"y_true": yb[200:], "proba": pb[200:]}, s)
        m2, f2 = U.calibrate_classification(val, {"y_true": 1 - yb[200:], "proba": pb[200:]}, s)
        assert f1 == f2 and m1["ece"] != m2["ece"]


# ------------------------------------------------------------------------------ metrics by hand


def test_regression_metrics_by_hand():
    got = U.interval_metrics([0, 1, 2, np.nan], [-1, 1.5, 1, 0], [1, 2, 3, 0])
    assert got == pytest.approx({"interval_coverage": 2 / 3, "interval_width": 1.5})
    assert U.gaussian_nll([0.0], [0.0], [1.0]) == pytest.approx(0.5 * math.log(2 * math.pi))
    # errors 1 and 2 with sd 1, 2 per bin: bin 1 |1 - 1| / 1 = 0, bin 2 |1 - 2| / 1 = 1
    assert U.ence([0, 0, 0, 0], [1, 1, 2, 2], [1, 1, 1, 1], bins=2) == pytest.approx(0.5)
    # no error at all: every interval covers, observed 1 at each expected e, area of 1 - e
    assert U.miscalibration_area([1, 2], [1, 2], [1, 1]) == pytest.approx(0.5)
    assert U.sd_error_spearman([0, 0, 0], [0.1, -0.2, 0.3], [1, 2, 3]) == pytest.approx(1.0)


def test_classification_metrics_by_hand():
    y, p = np.array([0, 1, 0, 1]), np.array([0.1, 0.9, 0.8, 0.3])
    # bin [0, 0.5): mean p 0.2, frequency 0.5; bin [0.5, 1]: 0.85 vs 0.5; each half the rows
    assert U.ece(y, p, bins=2) == pytest.approx(0.5 * 0.3 + 0.5 * 0.35)
    assert U.brier(y, p) == pytest.approx((0.01 + 0.01 + 0.64 + 0.49) / 4)
    assert U.log_loss(y, p) == pytest.approx(-np.mean(np.log([0.9, 0.9, 0.2, 0.3])))
    assert U.brier([0], [[0.7, 0.2, 0.1]]) == pytest.approx(0.09 + 0.04 + 0.01)
    assert U.ece([0, 2], [[0.7, 0.2, 0.1], [0.6, 0.3, 0.1]], bins=10) == pytest.approx(
        0.5 * 0.3 + 0.5 * 0.6
    )
    sets = U.ConformalSets(q=0.75, coverage=0.9, n_fit=10).sets([0.1, 0.5, 0.9])
    assert sets.tolist() == [[True, False], [True, True], [False, True]]
    assert U.set_metrics([1, 1, 1], sets) == {"set_size": 4 / 3, "set_coverage": 2 / 3}
