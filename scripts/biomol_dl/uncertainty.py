"""Uncertainty a prediction can be trusted with: calibrators fitted on the validation split and
the metrics that say whether an interval or a probability means what it says.

The sd comes from the model (predictions.csv's y_sd: a forest's tree spread, MC dropout, a
mean-variance or evidential head, a within-split ensemble); the calibrators treat them alike.

Every calibrator here has a `fit_*` function that sees validation rows only and returns a small
frozen object (JSON-able through `as_dict`) that is then applied to the test rows or to new
inputs; nothing in this module ever looks at a test label to fit anything.

Regression
  - split-conformal intervals (Vovk et al.; Lei et al. 2018): the finite-sample
    ceil((n + 1) * coverage) / n quantile of the validation scores |y - y_hat| (absolute) or
    |y - y_hat| / sd (normalized by the model's own sd where it has one), so a test interval
    y_hat +/- q (* sd) holds the nominal coverage for exchangeable rows;
  - variance scaling (Levi et al. 2022, chemprop's z-scaling): sd -> s * sd with
    s^2 = mean(((y - y_hat) / sd)^2) on validation, the Gaussian NLL optimum for one scale.
Classification (binary, each multitask column, multiclass)
  - temperature scaling (Guo et al. 2017): logits / T, T minimizing the validation NLL;
  - Platt scaling (binary): sigmoid(a * logit + b);
  - isotonic regression (binary; Zadrozny & Elkan 2002): a monotone step map of probabilities;
  - conformal prediction sets (Sadinle et al. 2019): classes whose probability is at least
    1 - q, q the conformal quantile of 1 - p(true class); a binary task is a two-class one.
Metrics
  - intervals: coverage and mean width;
  - predicted sd: Gaussian NLL, miscalibration area (Tran et al. 2020), ENCE (Levi et al.),
    Spearman between sd and |error|;
  - probabilities: ECE (equal-width bins), Brier score, NLL; sets: mean size and coverage.

numpy and scipy only, so the evaluate rule and predict need no torch or scikit-learn for it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

COVERAGE = 0.9
BINS = 10
PROBABILITY_CALIBRATORS = ("temperature", "platt", "isotonic")
_EPS = 1e-7


# ------------------------------------------------------------------------------ helpers


def _arrays(*values) -> list[np.ndarray]:
    out = [np.asarray(v, dtype=np.float64) for v in values]
    n = len(out[0])
    for v in out[1:]:
        if len(v) != n:
            raise ValueError(f"arrays of different lengths: {n} and {len(v)}")
    return out


def _check_coverage(coverage: float) -> float:
    if not 0 < coverage < 1:
        raise ValueError(f"coverage must lie strictly between 0 and 1, got {coverage}")
    return float(coverage)


def conformal_quantile(scores, coverage: float = COVERAGE) -> float:
    """The split-conformal threshold: the ceil((n + 1) * coverage)-th smallest of n scores;
    +inf when n is too small for that coverage (no finite threshold guarantees it)."""
    coverage = _check_coverage(coverage)
    scores = np.sort(np.asarray(scores, dtype=np.float64))
    scores = scores[np.isfinite(scores)]
    n = len(scores)
    k = math.ceil((n + 1) * coverage)
    if n == 0 or k > n:
        return math.inf
    return float(scores[k - 1])


def _positive_sd(sd: np.ndarray, where: str) -> np.ndarray:
    if not np.all(np.isfinite(sd)) or np.any(sd < 0):
        raise ValueError(f"{where}: predicted sd must be finite and >= 0")
    # A zero sd (all trees agree) would make a normalized score infinite: floor it.
    floor = max(float(np.median(sd)) * 1e-3, 1e-12) if len(sd) else 1e-12
    return np.maximum(sd, floor)


# ------------------------------------------------------------------------------ regression


@dataclass(frozen=True)
class ConformalInterval:
    """y_hat +/- q (absolute) or y_hat +/- q * sd (normalized), q fitted on validation."""

    q: float
    normalized: bool
    coverage: float
    n_fit: int

    def interval(self, y_pred, sd=None) -> tuple[np.ndarray, np.ndarray]:
        (y_pred,) = _arrays(y_pred)
        if self.normalized:
            if sd is None:
                raise ValueError("a normalized conformal interval needs the predicted sd")
            half = self.q * _positive_sd(np.asarray(sd, dtype=np.float64), "interval")
        else:
            half = np.full(len(y_pred), self.q)
        return y_pred - half, y_pred + half

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def fit_conformal_interval(
    y_val, pred_val, sd_val=None, coverage: float = COVERAGE
) -> ConformalInterval:
    """Split-conformal regression on validation rows (normalized by `sd_val` when given)."""
    y, p = _arrays(y_val, pred_val)
    keep = np.isfinite(y) & np.isfinite(p)
    scores = np.abs(y - p)[keep]
    if sd_val is not None:
        sd = _positive_sd(np.asarray(sd_val, dtype=np.float64)[keep], "fit_conformal_interval")
        scores = scores / sd
    return ConformalInterval(
        conformal_quantile(scores, coverage), sd_val is not None, coverage, int(keep.sum())
    )


@dataclass(frozen=True)
class VarianceScale:
    """sd -> scale * sd, scale fitted on validation (the Gaussian NLL optimum)."""

    scale: float
    n_fit: int

    def apply(self, sd) -> np.ndarray:
        return self.scale * np.asarray(sd, dtype=np.float64)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def fit_variance_scale(y_val, pred_val, sd_val) -> VarianceScale:
    y, p, sd = _arrays(y_val, pred_val, sd_val)
    keep = np.isfinite(y) & np.isfinite(p)
    if not keep.any():
        return VarianceScale(1.0, 0)
    z = (y - p)[keep] / _positive_sd(sd[keep], "fit_variance_scale")
    return VarianceScale(float(np.sqrt(np.mean(z**2))), int(keep.sum()))


def interval_metrics(y_true, lo, hi) -> dict[str, float]:
    """Fraction of labels inside [lo, hi] and the mean width (labelled rows only)."""
    y, lo, hi = _arrays(y_true, lo, hi)
    keep = np.isfinite(y)
    if not keep.any():
        return {"interval_coverage": math.nan, "interval_width": math.nan}
    y, lo, hi = y[keep], lo[keep], hi[keep]
    return {
        "interval_coverage": float(np.mean((y >= lo) & (y <= hi))),
        "interval_width": float(np.mean(hi - lo)),
    }


def gaussian_nll(y_true, y_pred, sd) -> float:
    """Mean negative log-likelihood of the labels under N(y_pred, sd^2)."""
    y, p, sd = _arrays(y_true, y_pred, sd)
    var = _positive_sd(sd, "gaussian_nll") ** 2
    return float(np.mean(0.5 * np.log(2 * np.pi * var) + (y - p) ** 2 / (2 * var)))


def miscalibration_area(y_true, y_pred, sd, n_levels: int = 101) -> float:
    """Area between observed and expected coverage of central Gaussian intervals, over expected
    proportions 0..1 (0: perfectly calibrated; at most 0.5)."""
    from scipy.stats import norm

    y, p, sd = _arrays(y_true, y_pred, sd)
    z = np.abs(y - p) / _positive_sd(sd, "miscalibration_area")
    expected = np.linspace(0, 1, n_levels)
    observed = np.array([np.mean(z <= norm.ppf(0.5 + e / 2)) for e in expected])
    return float(np.trapezoid(np.abs(observed - expected), expected))


def ence(y_true, y_pred, sd, bins: int = BINS) -> float:
    """Expected normalized calibration error: rows sorted by sd into equal-count bins; the mean
    over bins of |RMV - RMSE| / RMV (RMV: root mean predicted variance)."""
    y, p, sd = _arrays(y_true, y_pred, sd)
    order = np.argsort(sd, kind="stable")
    values = []
    for part in np.array_split(order, min(bins, len(order))):
        rmv = math.sqrt(float(np.mean(sd[part] ** 2)))
        rmse = math.sqrt(float(np.mean((y[part] - p[part]) ** 2)))
        if rmv > 0:
            values.append(abs(rmv - rmse) / rmv)
    return float(np.mean(values)) if values else math.nan


def sd_error_spearman(y_true, y_pred, sd) -> float:
    """Spearman correlation between the predicted sd and the absolute error."""
    from scipy.stats import spearmanr

    y, p, sd = _arrays(y_true, y_pred, sd)
    if len(y) < 2 or np.ptp(sd) == 0:
        return math.nan
    return float(spearmanr(sd, np.abs(y - p)).statistic)


def sd_metrics(y_true, y_pred, sd, bins: int = BINS, prefix: str = "") -> dict[str, float]:
    y, p, sd = _arrays(y_true, y_pred, sd)
    keep = np.isfinite(y)
    y, p, sd = y[keep], p[keep], sd[keep]
    if not keep.any():
        return {f"{prefix}{k}": math.nan for k in ("nll", "miscalibration_area", "ence")}
    return {
        f"{prefix}nll": gaussian_nll(y, p, sd),
        f"{prefix}miscalibration_area": miscalibration_area(y, p, sd),
        f"{prefix}ence": ence(y, p, sd, bins),
    }


# ------------------------------------------------------------------------------ probabilities


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, _EPS, 1 - _EPS)
    return np.log(p) - np.log1p(-p)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _softmax_log(proba: np.ndarray, temperature: float) -> np.ndarray:
    z = np.log(np.clip(proba, _EPS, 1.0)) / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _as_two_class(p: np.ndarray) -> np.ndarray:
    return np.stack([1 - p, p], axis=1)


@dataclass(frozen=True)
class ProbabilityCalibrator:
    """A fitted map of predicted probabilities: temperature, Platt or isotonic.

    Binary: `apply` maps P(class 1) [N]; multiclass (temperature only): [N, K] probabilities.
    """

    method: str
    n_fit: int
    temperature: float = 1.0
    a: float = 1.0
    b: float = 0.0
    x: tuple[float, ...] = ()  # isotonic: the knots, increasing
    y: tuple[float, ...] = ()

    def apply(self, proba) -> np.ndarray:
        proba = np.asarray(proba, dtype=np.float64)
        if proba.ndim == 2:
            if self.method != "temperature":
                raise ValueError(f"{self.method} calibrates binary probabilities only")
            return _softmax_log(proba, self.temperature)
        if self.method == "temperature":
            return _sigmoid(_logit(proba) / self.temperature)
        if self.method == "platt":
            return _sigmoid(self.a * _logit(proba) + self.b)
        if not self.x:
            return proba
        return np.interp(proba, self.x, self.y)

    def as_dict(self) -> dict[str, Any]:
        d = {"method": self.method, "n_fit": self.n_fit}
        if self.method == "temperature":
            d["temperature"] = self.temperature
        elif self.method == "platt":
            d.update(a=self.a, b=self.b)
        else:
            d.update(x=list(self.x), y=list(self.y))
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ProbabilityCalibrator:
        """The calibrator `as_dict` wrote (metrics.json), e.g. for the predict rule."""
        return cls(
            method=d["method"], n_fit=int(d["n_fit"]), temperature=float(d.get("temperature", 1.0)),
            a=float(d.get("a", 1.0)), b=float(d.get("b", 0.0)), x=tuple(d.get("x", ())),
            y=tuple(d.get("y", ())),
        )  # fmt: skip


def _fit_temperature(nll_of) -> float:
    from scipy.optimize import minimize_scalar

    best = minimize_scalar(lambda t: nll_of(math.exp(t)), bounds=(-4.0, 4.0), method="bounded")
    return float(math.exp(best.x))


def fit_probability_calibrator(y_val, p_val, method: str = "temperature") -> ProbabilityCalibrator:
    """Fit on validation rows: y_val labels (0/1, or class indices with p_val [N, K])."""
    if method not in PROBABILITY_CALIBRATORS:
        raise ValueError(
            f"unknown calibrator {method!r}; valid: {', '.join(PROBABILITY_CALIBRATORS)}"
        )
    y = np.asarray(y_val, dtype=np.float64)
    p = np.asarray(p_val, dtype=np.float64)
    keep = np.isfinite(y)
    y, p = y[keep], p[keep]
    n = int(keep.sum())
    if n == 0:
        return ProbabilityCalibrator(method, 0)
    if p.ndim == 2:
        if method != "temperature":
            raise ValueError(f"{method} calibrates binary probabilities only; use temperature")
        t = y.astype(int)
        logp = np.log(np.clip(p, _EPS, 1.0))

        def nll(temp):
            z = logp / temp
            z = z - z.max(axis=1, keepdims=True)
            return float(np.mean(np.log(np.exp(z).sum(axis=1)) - z[np.arange(n), t]))

        return ProbabilityCalibrator("temperature", n, temperature=_fit_temperature(nll))
    logit = _logit(p)
    if method == "temperature":
        return ProbabilityCalibrator(
            method, n, temperature=_fit_temperature(lambda temp: _binary_nll(y, logit / temp))
        )
    if method == "platt":
        from scipy.optimize import minimize

        res = minimize(lambda ab: _binary_nll(y, ab[0] * logit + ab[1]), x0=[1.0, 0.0])
        return ProbabilityCalibrator(method, n, a=float(res.x[0]), b=float(res.x[1]))
    from scipy.optimize import isotonic_regression

    # tied probabilities (a forest's votes) are one point, weighted by how many rows share it
    x, inverse = np.unique(p, return_inverse=True)
    weight = np.bincount(inverse).astype(np.float64)
    fitted = isotonic_regression(np.bincount(inverse, y) / weight, weights=weight).x
    # Only the ends of each constant block are needed for the same piecewise-linear map.
    change = np.flatnonzero(np.diff(fitted) != 0)
    keep = np.unique(np.r_[0, change, change + 1, len(x) - 1])
    return ProbabilityCalibrator(
        method, n, x=tuple(x[keep].tolist()), y=tuple(fitted[keep].tolist())
    )


def _binary_nll(y: np.ndarray, logit: np.ndarray) -> float:
    # log(1 + exp(-s)) for positives, log(1 + exp(s)) for negatives, without overflow
    s = np.where(y == 1, logit, -logit)
    return float(np.mean(np.logaddexp(0.0, -s)))


def _two_class(y: np.ndarray, proba: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(class indices, [N, K] probabilities) of a binary [N] or multiclass [N, K] prediction."""
    proba = np.asarray(proba, dtype=np.float64)
    if proba.ndim == 1:
        proba = _as_two_class(proba)
    return np.asarray(y).astype(int), proba


def reliability_bins(y_true, proba, bins: int = BINS) -> dict[str, np.ndarray]:
    """Per non-empty equal-width bin: mean confidence, observed frequency and row count (binary
    [N]: P(class 1) against the share of class 1; multiclass [N, K]: top-class confidence
    against accuracy), what ECE sums and a reliability diagram draws."""
    y, p = np.asarray(y_true, dtype=np.float64), np.asarray(proba, dtype=np.float64)
    if p.ndim == 2:
        conf, hit = p.max(axis=1), (p.argmax(axis=1) == y.astype(int)).astype(float)
    else:
        conf, hit = p, y
    which = np.minimum((conf * bins).astype(int), bins - 1)
    count = np.bincount(which, minlength=bins)
    full = count > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(which, conf, bins)[full] / count[full]
        freq = np.bincount(which, hit, bins)[full] / count[full]
    return {"confidence": mean_conf, "frequency": freq, "count": count[full]}


def ece(y_true, proba, bins: int = BINS) -> float:
    """Expected calibration error over equal-width bins: binary [N] probabilities against the
    frequency of class 1; multiclass [N, K]: the top-class confidence against accuracy."""
    if len(y_true) == 0:
        return math.nan
    r = reliability_bins(y_true, proba, bins)
    weight = r["count"] / r["count"].sum()
    return float(np.sum(weight * np.abs(r["frequency"] - r["confidence"])))


def brier(y_true, proba) -> float:
    """Binary: mean (p - y)^2; multiclass: mean over rows of sum_k (p_k - [y = k])^2."""
    y, p = np.asarray(y_true, dtype=np.float64), np.asarray(proba, dtype=np.float64)
    if len(y) == 0:
        return math.nan
    if p.ndim == 1:
        return float(np.mean((p - y) ** 2))
    onehot = np.eye(p.shape[1])[y.astype(int)]
    return float(np.mean(((p - onehot) ** 2).sum(axis=1)))


def log_loss(y_true, proba) -> float:
    """Mean negative log probability of the true class (probabilities clipped at 1e-7)."""
    t, p = _two_class(y_true, proba)
    if len(t) == 0:
        return math.nan
    return float(-np.mean(np.log(np.clip(p[np.arange(len(t)), t], _EPS, 1.0))))


def probability_metrics(y_true, proba, bins: int = BINS, prefix: str = "") -> dict[str, float]:
    return {
        f"{prefix}ece": ece(y_true, proba, bins),
        f"{prefix}brier": brier(y_true, proba),
        f"{prefix}nll": log_loss(y_true, proba),
    }


@dataclass(frozen=True)
class ConformalSets:
    """Classes with probability >= 1 - q; q the conformal quantile of validation 1 - p(true)."""

    q: float
    coverage: float
    n_fit: int

    def sets(self, proba) -> np.ndarray:
        """[N, K] booleans (a binary [N] P(class 1) counts as classes 0 and 1)."""
        p = np.asarray(proba, dtype=np.float64)
        p = _as_two_class(p) if p.ndim == 1 else p
        return p >= 1.0 - self.q

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def fit_conformal_sets(y_val, proba_val, coverage: float = COVERAGE) -> ConformalSets:
    y = np.asarray(y_val, dtype=np.float64)
    keep = np.isfinite(y)
    t, p = _two_class(y[keep], np.asarray(proba_val, dtype=np.float64)[keep])
    scores = 1.0 - p[np.arange(len(t)), t]
    return ConformalSets(conformal_quantile(scores, coverage), coverage, int(keep.sum()))


def set_metrics(y_true, sets: np.ndarray) -> dict[str, float]:
    y = np.asarray(y_true).astype(int)
    if len(y) == 0:
        return {"set_size": math.nan, "set_coverage": math.nan}
    return {
        "set_size": float(sets.sum(axis=1).mean()),
        "set_coverage": float(sets[np.arange(len(y)), y].mean()),
    }


def coverage_curve(val: Mapping, test: Mapping, levels) -> np.ndarray:
    """Observed test coverage of the conformal interval fitted on val at each nominal level
    (normalized by sd where val / test carry one)."""
    sd_v, sd_t = val.get("sd"), test.get("sd")
    out = []
    for level in levels:
        fitted = fit_conformal_interval(val["y_true"], val["y_pred"], sd_v, coverage=level)
        lo, hi = fitted.interval(test["y_pred"], sd_t if sd_v is not None else None)
        out.append(interval_metrics(test["y_true"], lo, hi)["interval_coverage"])
    return np.asarray(out)


# ------------------------------------------------------------------------------ one task


@dataclass(frozen=True)
class Settings:
    """A model's `uncertainty:` entry (workflow/schemas/config.schema.yaml)."""

    coverage: float = COVERAGE
    # the sd regression intervals scale with: auto | none | trees | dropout | mve | evidential |
    # ensemble (all but auto and none are computed by the train job)
    estimate: str = "auto"
    probability: str = "temperature"
    bins: int = BINS
    passes: int = 20  # MC dropout
    members: int = 5  # a within-split ensemble

    @classmethod
    def from_config(cls, entry: Mapping[str, Any] | None) -> Settings:
        return cls(**dict(entry or {}))


def calibrate_regression(val: Mapping, test: Mapping, settings: Settings) -> tuple[dict, dict]:
    """(test metrics, fitted calibrators) of one regression task.

    val / test: y_true, y_pred and, when the model has its own estimate, sd (arrays). Fitted on
    val; the test labels are read only to score.
    """
    metrics: dict[str, float] = {}
    fitted: dict[str, Any] = {}
    absolute = fit_conformal_interval(val["y_true"], val["y_pred"], coverage=settings.coverage)
    lo, hi = absolute.interval(test["y_pred"])
    fitted["abs_interval"] = absolute.as_dict()
    metrics.update({f"abs_{k}": v for k, v in interval_metrics(test["y_true"], lo, hi).items()})
    if val.get("sd") is None or test.get("sd") is None:
        metrics.update({"interval_coverage": metrics["abs_interval_coverage"],
                        "interval_width": metrics["abs_interval_width"]})  # fmt: skip
        return metrics, fitted
    scale = fit_variance_scale(val["y_true"], val["y_pred"], val["sd"])
    normalized = fit_conformal_interval(
        val["y_true"], val["y_pred"], val["sd"], coverage=settings.coverage
    )
    fitted.update(variance_scale=scale.as_dict(), interval=normalized.as_dict())
    lo, hi = normalized.interval(test["y_pred"], test["sd"])
    metrics.update(interval_metrics(test["y_true"], lo, hi))
    y, p, sd = test["y_true"], test["y_pred"], np.asarray(test["sd"], dtype=np.float64)
    metrics.update(sd_metrics(y, p, sd, settings.bins, prefix="raw_"))
    metrics.update(sd_metrics(y, p, scale.apply(sd), settings.bins))
    keep = np.isfinite(np.asarray(y, dtype=np.float64))
    metrics["sd_spearman"] = sd_error_spearman(np.asarray(y)[keep], np.asarray(p)[keep], sd[keep])
    return metrics, fitted


def calibrate_classification(val: Mapping, test: Mapping, settings: Settings) -> tuple[dict, dict]:
    """(test metrics, fitted calibrators) of one binary column or a multiclass task.

    val / test: y_true and proba (P(class 1) [N] or [N, K]); rows without a label are left out.
    Multiclass always uses temperature scaling (Platt and isotonic are binary maps).
    """
    pv, pt = np.asarray(val["proba"], dtype=np.float64), np.asarray(test["proba"], dtype=np.float64)
    method = settings.probability if pv.ndim == 1 else "temperature"
    yv, yt = (
        np.asarray(val["y_true"], dtype=np.float64),
        np.asarray(test["y_true"], dtype=np.float64),
    )
    kv, kt = np.isfinite(yv), np.isfinite(yt)
    calibrator = fit_probability_calibrator(yv[kv], pv[kv], method)
    calibrated_val = calibrator.apply(pv[kv])
    sets = fit_conformal_sets(yv[kv], calibrated_val, settings.coverage)
    calibrated = calibrator.apply(pt[kt])
    metrics = probability_metrics(yt[kt], pt[kt], settings.bins, prefix="raw_")
    metrics.update(probability_metrics(yt[kt], calibrated, settings.bins))
    metrics.update(set_metrics(yt[kt], sets.sets(calibrated)))
    return metrics, {"probability": calibrator.as_dict(), "sets": sets.as_dict()}
