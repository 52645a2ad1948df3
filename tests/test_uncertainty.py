"""Calibrators fitted on validation rows and uncertainty metrics (biomol_dl.uncertainty), on
synthetic data whose truth is known and on small cases computed by hand."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
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


# ------------------------------------------------------------------------------ evaluate rule


def _long(task, rng, n=120, n_tasks=1, sd=True):
    """A predictions.csv frame (id, split, task, y_true, y_pred [, y_sd | p_k]) of n rows."""
    split = np.array(["train", "val", "test"])[np.arange(n) % 3]
    frames = []
    for t in range(n_tasks):
        frame = {"id": [f"m{i}" for i in range(n)], "split": split, "task": f"t{t}"}
        if task == "regression":
            y, pred, s = _heteroscedastic(rng, n)
            frame.update(y_true=y, y_pred=pred, **({"y_sd": s} if sd else {}))
        elif task == "multiclass":
            p = rng.dirichlet(np.ones(3), n)
            frame.update(y_true=rng.integers(0, 3, n).astype(float), y_pred=p.argmax(1))
            frame.update({f"p_{k}": p[:, k] for k in range(3)})
        else:
            y, p = _overconfident_binary(rng, n)
            y[rng.uniform(size=n) < 0.2] = np.nan  # multitask gaps
            frame.update(y_true=y, y_pred=p)
        frames.append(pd.DataFrame(frame))
    return pd.concat(frames, ignore_index=True)


@pytest.mark.parametrize(
    "task, n_tasks, sd",
    [("regression", 1, True), ("regression", 2, False), ("multitask_binary", 2, False),
     ("binary", 1, False), ("multiclass", 1, False)],
)  # fmt: skip
def test_evaluate_fits_on_val_and_never_reads_test_labels(task, n_tasks, sd):
    from biomol_dl.evaluate import calibrated_test_metrics

    pred = _long(task, np.random.default_rng(8), n_tasks=n_tasks, sd=sd)
    settings = U.Settings()
    got = calibrated_test_metrics(pred, task, settings)
    assert got["fitted_on"] == "val" and set(got["tasks"]) == {f"t{t}" for t in range(n_tasks)}
    assert got["n"] == 40
    names = set(got["mean"])
    if task == "regression":
        assert {"interval_coverage", "abs_interval_width"} <= names
        assert ("sd_spearman" in names) == sd and got["settings"]["estimate_used"] == (
            "y_sd" if sd else "none"
        )
    else:
        assert {"ece", "raw_ece", "brier", "nll", "set_size", "set_coverage"} <= names
    poisoned = pred.copy()
    is_test = poisoned["split"] == "test"
    if task == "regression":
        poisoned.loc[is_test, "y_true"] = poisoned.loc[is_test, "y_true"] * 50 - 3
    else:
        poisoned.loc[is_test, "y_true"] = (poisoned.loc[is_test, "y_true"] + 1) % 2
    again = calibrated_test_metrics(poisoned, task, settings)
    assert again["calibrators"] == got["calibrators"]
    assert again["mean"] != got["mean"]
    # ... and the val rows do move the calibrators
    shuffled = pred.copy()
    is_val = shuffled["split"] == "val"
    shuffled.loc[is_val, "y_true"] = shuffled.loc[is_val, "y_true"].to_numpy()[::-1]
    assert calibrated_test_metrics(shuffled, task, settings)["calibrators"] != got["calibrators"]


def test_metrics_json_carries_calibrated_test_metrics(tmp_path):
    """Too few validation rows for the coverage: an unbounded interval, written as null."""
    from biomol_dl.evaluate import run_evaluation

    pred = _long("regression", np.random.default_rng(9), n=15)
    pred.to_csv(tmp_path / "predictions.csv", index=False)
    out = tmp_path / "metrics.json"
    run_evaluation(tmp_path / "predictions.csv", "regression", out, {"coverage": 0.95})
    result = json.loads(out.read_text())  # strict JSON: no NaN or Infinity
    block = result["test_calibrated"]
    assert block["settings"]["coverage"] == 0.95
    assert block["calibrators"]["t0"]["interval"]["q"] is None
    assert block["mean"]["interval_coverage"] == 1.0 and block["mean"]["interval_width"] is None
    pred.drop(columns="y_sd").to_csv(tmp_path / "no_sd.csv", index=False)
    with pytest.raises(ValueError, match="no_sd.csv: uncertainty estimate 'trees'"):
        run_evaluation(tmp_path / "no_sd.csv", "regression", out, {"estimate": "trees"})


def test_forest_tree_spread_is_the_sd_around_its_prediction():
    from sklearn.ensemble import RandomForestRegressor

    from biomol_dl.models.rf import tree_sd

    rng = np.random.default_rng(10)
    X = rng.normal(size=(80, 3))
    y = X[:, 0] + rng.normal(0, 0.3, 80)
    forest = RandomForestRegressor(n_estimators=20, random_state=0).fit(X, y)
    far = np.vstack([X[:5], X[:5] + 8.0])
    sd = tree_sd(forest, far)
    per_tree = np.stack([t.predict(far) for t in forest.estimators_])
    assert np.allclose(per_tree.mean(axis=0), forest.predict(far))
    assert np.allclose(sd, per_tree.std(axis=0)) and (sd >= 0).all()


# ------------------------------------------------------------------------------ estimates


def test_mc_dropout_draws_vary_reproducibly_and_leave_eval_mode():
    import torch

    from biomol_dl import training

    class Net(torch.nn.Module):
        def __init__(self, p):
            super().__init__()
            self.body = torch.nn.Sequential(
                torch.nn.Linear(3, 16), torch.nn.ReLU(), torch.nn.Dropout(p), torch.nn.Linear(16, 1)
            )

        def forward(self, batch):
            return self.body(batch["x"])

    torch.manual_seed(0)
    batches = [{"x": torch.randn(8, 3), "y": torch.zeros(8, 1)} for _ in range(2)]
    net = Net(0.3)
    plain = training.predict(net, batches, task="regression")
    a = training.predict_mc_dropout(net, batches, task="regression", passes=5, seed=1)
    b = training.predict_mc_dropout(net, batches, task="regression", passes=5, seed=1)
    assert a.shape == (5, 16, 1) and np.array_equal(a, b)
    assert (a.std(axis=0) > 0).all()
    assert not net.training and not any(m.training for m in net.modules())
    assert np.array_equal(training.predict(net, batches, task="regression"), plain)
    with pytest.raises(ValueError, match="no dropout layer with p > 0"):
        training.predict_mc_dropout(Net(0.0), batches, task="regression", passes=3, seed=1)


def test_only_a_train_time_estimate_reaches_the_train_rule():
    from biomol_dl import rule_params

    def config(uncertainty):
        model = {"family": "mlp", "featurizer": "f", "threads": 2, "uncertainty": uncertainty}
        return {"models": {"m": model}, "featurizers": {"f": {"type": "morgan"}}}

    calibration = {"coverage": 0.8, "estimate": "auto", "probability": "isotonic", "passes": 20}
    assert "uncertainty" not in rule_params.train_model_spec(config(calibration), "m")
    assert rule_params.evaluate_uncertainty(config(calibration), "m") == calibration
    dropout = {**calibration, "estimate": "dropout", "passes": 7}
    spec = rule_params.train_model_spec(config(dropout), "m")
    assert spec["uncertainty"] == {"estimate": "dropout", "passes": 7}
    mve = {**calibration, "estimate": "mve", "members": 5}
    assert rule_params.train_model_spec(config(mve), "m")["uncertainty"] == {"estimate": "mve"}
    ensemble = {**calibration, "estimate": "ensemble", "members": 3}
    spec = rule_params.train_model_spec(config(ensemble), "m")
    assert spec["uncertainty"] == {"estimate": "ensemble", "members": 3}


def test_leaderboard_carries_calibrated_test_metrics(tmp_path):
    from biomol_dl.report.leaderboard import calibrated_columns

    paths = []
    for model, seed, coverage in (("a", 0, 0.8), ("a", 1, 0.9), ("b", 0, 1.0)):
        path = tmp_path / f"results/d/evaluate/{model}/seed{seed}/metrics.json"
        path.parent.mkdir(parents=True)
        used = "y_sd" if model == "a" else "none"
        block = {"n": 3, "tasks": {}, "mean": {"interval_coverage": coverage},
                 "settings": {"coverage": 0.9, "estimate": "mve", "estimate_used": used}}  # fmt: skip
        path.write_text(json.dumps({"test": {"mean": {"rmse": 1.0}}, "test_calibrated": block}))
        paths.append(path)
    table = calibrated_columns(paths).set_index("model")
    assert table.loc["a", "test_calibrated_interval_coverage_mean"] == pytest.approx(0.85)
    assert table.loc["a", "test_calibrated_interval_coverage_sd"] == pytest.approx(0.0707, 1e-3)
    assert table.loc["b", "test_calibrated_interval_coverage_mean"] == 1.0
    assert table.loc["a", "test_calibrated_estimate"] == "mve"
    assert table.loc["b", "test_calibrated_estimate"] == "none"
    assert table.loc["b", "test_calibrated_coverage"] == 0.9


def test_report_shows_the_calibrated_metrics_as_a_table():
    from biomol_dl.report.html import _uncertainty_table

    rows = [
        {"model": "mve_gnn", "test_calibrated_estimate": "mve", "test_calibrated_coverage": 0.9,
         "test_calibrated_interval_coverage_mean": 0.88, "test_calibrated_interval_coverage_sd": 0.02,
         "test_calibrated_ence_mean": 0.1, "test_calibrated_ence_sd": None},
        {"model": "rf", "test_calibrated_estimate": "trees", "test_calibrated_coverage": 0.9,
         "test_calibrated_interval_coverage_mean": 0.95, "test_calibrated_ence_mean": 0.3},
        {"model": "no_uq"},
    ]  # fmt: skip
    page = _uncertainty_table("esol", rows)
    assert "id='uncertainty-esol'" in page and "validation split only" in page
    assert "<th>interval coverage</th>" in page and "<th>ENCE</th>" in page
    assert "<th>ECE" not in page and "<th>NLL" not in page  # no column without values
    # best: coverage nearest the nominal 0.9 (0.88, not 0.95), the lowest ENCE
    assert "<td class='best'>0.880<br><span class='sd'> ± 0.020</span></td>" in page
    assert "<td class='best'>0.100</td>" in page and "<td class=''>0.950</td>" in page
    assert page.count("<tr><td class='text model'>") == 3
    assert _uncertainty_table("esol", [{"model": "no_uq"}]) == ""


@pytest.mark.parametrize(
    "task, n_tasks, sd, expected",
    [("regression", 1, True, "coverage"), ("regression", 1, False, "coverage"),
     ("multitask_binary", 3, False, "reliability"), ("multiclass", 1, False, "reliability")],
)  # fmt: skip
def test_uncertainty_plots_from_val_and_test_rows(tmp_path, task, n_tasks, sd, expected):
    from biomol_dl.evaluate import calibrated_test_metrics
    from biomol_dl.report import plots

    pred = _long(task, np.random.default_rng(11), n=150, n_tasks=n_tasks, sd=sd)
    result = {"test_calibrated": calibrated_test_metrics(pred, task, U.Settings())}
    added = []

    def add(name, fig, caption, wide=False):
        plots.save(fig, tmp_path / f"{name}.png")
        added.append((name, caption))

    plots._uncertainty_plots(add, task, pred, result, title="t", which="seed 0")
    assert [name for name, _ in added] == [expected]
    assert "validation" in added[0][1] and (tmp_path / f"{expected}.png").stat().st_size > 5000
    added.clear()
    plots._uncertainty_plots(add, task, pred, {"test": {}}, title="t", which="seed 0")
    assert not added  # no calibrated block (metrics from before calibration): no plot


# ------------------------------------------------------------------------------ applicability


def test_nearest_similarity_by_hand_and_against_rdkit():
    from rdkit import Chem, DataStructs
    from rdkit.Chem import rdFingerprintGenerator

    from biomol_dl.domain import Reference, nearest_similarity

    train = ["CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1"]
    queries = ["CCO", "c1ccccc1N", "CCCCCCCCCC"]
    got = nearest_similarity(queries, train, "smiles")
    gen = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)
    fps = [gen.GetFingerprint(Chem.MolFromSmiles(s)) for s in train]
    want = [max(DataStructs.BulkTanimotoSimilarity(gen.GetFingerprint(Chem.MolFromSmiles(q)),
                                                   fps)) for q in queries]  # fmt: skip
    assert got == pytest.approx(want) and got[0] == 1.0 and got[2] < 0.3
    # 3-mers: ACDE {ACD, CDE} vs ACDF {ACD, CDF}: 1 shared of 3
    sim = nearest_similarity(["ACDE", "ACDF", "WWWW"], ["ACDF", "KLMN"], "protein")
    assert sim == pytest.approx([1 / 3, 1.0, 0.0])
    reference = Reference(["ACDF", "KLMN"], "protein")  # built once, asked block by block
    assert reference.similarity(["WWWW", "ACDE"]) == pytest.approx([0.0, 1 / 3])
    assert reference.similarity(["KLMN"]) == pytest.approx([1.0])


def test_isotonic_with_tied_probabilities_round_trips_through_json():
    y = np.array([0, 1, 0, 0, 1, 1, 1, 0, 1, 1], float)
    p = np.array([0.2, 0.2, 0.2, 0.2, 0.6, 0.6, 0.6, 0.6, 0.9, 0.9])
    cal = U.fit_probability_calibrator(y, p, "isotonic")
    # each tied value maps to its group's share of positives (already increasing)
    assert cal.apply(np.array([0.2, 0.6, 0.9])) == pytest.approx([0.25, 0.75, 1.0])
    again = U.ProbabilityCalibrator.from_dict(json.loads(json.dumps(cal.as_dict())))
    grid = np.linspace(0, 1, 21)
    assert np.array_equal(again.apply(grid), cal.apply(grid))


@pytest.mark.parametrize("task", ["regression", "binary", "multiclass"])
def test_predictions_carry_calibrated_columns_and_the_domain(task):
    from biomol_dl.domain import Reference
    from biomol_dl.evaluate import calibrated_test_metrics
    from biomol_dl.trust import add_trust_columns

    rng = np.random.default_rng(12)
    blocks = {s: calibrated_test_metrics(_long(task, rng), task, U.Settings()) for s in (0, 1)}
    inputs = ["CCO", "c1ccccc1N", "CCCCCCCCCC"]
    frame = pd.DataFrame({"task": "t0", "y_pred": [0.2, 0.5, 0.9]})
    if task == "multiclass":
        frame[["p_0", "p_1", "p_2"]] = [[0.7, 0.2, 0.1], [0.4, 0.4, 0.2], [0.1, 0.1, 0.8]]
    elif task == "binary":
        frame = frame.assign(seed0=[0.1, 0.5, 0.9], seed1=[0.3, 0.5, 0.9])
    reference = Reference(["CCO", "c1ccccc1O"], "smiles")
    out = add_trust_columns(frame, task=task, inputs=inputs, calibrations=blocks,
                            reference=reference, classes=["a", "b", "c"])  # fmt: skip
    assert out["similarity"].iloc[0] == 1.0 and out["in_domain"].tolist() == [True, True, False]
    if task == "regression":
        q = np.mean([b["calibrators"]["t0"]["abs_interval"]["q"] for b in blocks.values()])
        assert np.allclose(out["y_hi"] - out["y_lo"], 2 * q) and (out["y_lo"] < out["y_pred"]).all()
    elif task == "binary":
        cal = [U.ProbabilityCalibrator.from_dict(b["calibrators"]["t0"]["probability"])
               for b in blocks.values()]  # fmt: skip
        want = (
            cal[0].apply(frame["seed0"].to_numpy()) + cal[1].apply(frame["seed1"].to_numpy())
        ) / 2
        assert out["p_calibrated"].to_numpy() == pytest.approx(want)
        assert set(out["set"]) <= {"", "0", "1", "0|1"}
    else:
        calibrated = out[["p_0_calibrated", "p_1_calibrated", "p_2_calibrated"]].to_numpy()
        assert np.allclose(calibrated.sum(axis=1), 1) and all(s for s in out["set"])
        assert set("|".join(out["set"]).split("|")) <= {"a", "b", "c"}


def test_predict_takes_the_trust_inputs_together_or_not_at_all(tmp_path):
    from biomol_dl.predict import run_predict

    args = dict(input_path=tmp_path / "x.csv", input_column="smiles", id_column=None,
                kind="smiles", validation=None, task="regression", validate_summary=None,
                family="rf", model_files={0: tmp_path / "m"}, out_predictions=tmp_path / "p.csv",
                out_rejects=tmp_path / "r.csv", out_summary=tmp_path / "s.json")  # fmt: skip
    with pytest.raises(ValueError, match="together"):
        run_predict(**args, metrics_files={0: tmp_path / "metrics.json"})
    with pytest.raises(ValueError, match=r"seed\(s\) \[0\]"):
        run_predict(**args, metrics_files={1: "a"}, clean_csv="c", split_files={1: "b"})


# ------------------------------------------------------------------------------ variance heads


def test_head_losses_are_the_gaussian_and_nig_likelihoods():
    """mve: the Gaussian NLL of N(mean, softplus(raw)); evidential without its regularizer: the
    NIG marginal, a Student t with 2 alpha dof, loc gamma, scale^2 beta (1 + nu) / (nu alpha)."""
    import torch
    from scipy import stats

    from biomol_dl import training

    g = torch.Generator().manual_seed(0)
    raw = torch.randn(6, 4, generator=g, dtype=torch.float64)
    z = torch.randn(6, 1, generator=g, dtype=torch.float64)
    mean, var = training.head_parts(raw[:, :2], "mve")
    expected = stats.norm.logpdf(z.numpy(), mean.numpy(), np.sqrt(var.numpy()))
    got = training._head_loss((mean, var), z, "mve").numpy()
    np.testing.assert_allclose(got, -expected, rtol=1e-10)
    gamma, nu, alpha, beta = parts = training.head_parts(raw, "evidential")
    assert (alpha > 1).all() and (nu > 0).all() and (beta > 0).all()
    scale = np.sqrt((beta * (1 + nu) / (nu * alpha)).numpy())
    t = stats.t.logpdf(z.numpy(), df=2 * alpha.numpy(), loc=gamma.numpy(), scale=scale)
    reg = training.EVIDENTIAL_REG * ((z - gamma).abs() * (2 * nu + alpha)).numpy()
    np.testing.assert_allclose(training._head_loss(parts, z, "evidential").numpy() - reg, -t,
                               rtol=1e-8)  # fmt: skip
    # the predictive variance of the t: scale^2 * dof / (dof - 2) = beta (1 + nu) / (nu (alpha - 1))
    dof = 2 * alpha.numpy()
    np.testing.assert_allclose(training.head_variance(parts, "evidential").numpy(),
                               scale**2 * dof / (dof - 2), rtol=1e-10)  # fmt: skip


def test_head_loss_masks_missing_multitask_labels():
    import torch

    from biomol_dl import training

    scaler = training.TargetScaler([0.0, 0.0], [1.0, 1.0])
    for head in ("mve", "evidential"):
        loss_fn = training._Loss("regression", scaler, None, None, "cpu", head)
        out = torch.randn(4, training.head_outputs(head, 2), requires_grad=True)
        y = torch.tensor([[0.5, float("nan")], [1.0, 2.0], [float("nan"), 0.0], [0.1, 0.2]])
        total, count = loss_fn(out, y)
        total.backward()
        assert count == 6 and torch.isfinite(total) and torch.isfinite(out.grad).all()
        assert (out.grad[0, 1::2] == 0).all() and (out.grad[2, 0::2] == 0).all()
        with pytest.raises(ValueError, match=f"{head} head"):
            loss_fn(torch.zeros(4, 2), y)


def _hetero_problem(folder, n=400, d=4):
    """clean.csv, split.csv, features.pt: y = x0 + noise whose log sd is linear in x1."""
    import torch

    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, d)).astype(np.float32)
    noise_sd = 0.3 * np.exp(0.7 * X[:, 1])
    y = X[:, 0] + rng.normal(0, noise_sd)
    ids = [f"m{i}" for i in range(n)]
    pd.DataFrame({"id": ids, "input": ["C"] * n, "row": np.arange(1, n + 1), "y": y}).to_csv(
        folder / "clean.csv", index=False
    )
    split = np.array(["train"] * n, dtype=object)
    split[n * 6 // 10 : n * 8 // 10] = "val"
    split[n * 8 // 10 :] = "test"
    pd.DataFrame({"id": ids, "split": split}).to_csv(folder / "split.csv", index=False)
    torch.save({"ids": ids, "X": torch.from_numpy(X)}, folder / "features.pt")
    return noise_sd, split


def _train(folder, family, uncertainty, epochs=40, tag="", params=None, resume_dir=None):
    from biomol_dl import train_job

    spec = {"name": "m", "family": "mlp", "featurizer": "fp",
            "featurizer_spec": {"type": "morgan", "n_bits": 4},
            "params": {"epochs": epochs, "batch_size": 64, "hidden": [32], "patience": 0,
                       "lr": 1e-2, "dropout": 0.0, **(params or {})},
            "uncertainty": uncertainty}  # fmt: skip
    out = folder / f"out{tag}"
    train_job.run_training(
        family, clean_csv=folder / "clean.csv", split_csv=folder / "split.csv",
        features_pt=folder / "features.pt", model_spec=spec, task="regression",
        label_columns=["y"], seed=0, out_model=out / "model.pt",
        out_predictions=out / "predictions.csv", out_history=out / "history.csv", threads=1,
        resume_dir=resume_dir,
    )  # fmt: skip
    return out


@pytest.mark.parametrize("head", ["mve", "evidential"])
def test_variance_head_learns_where_the_noise_is(tmp_path, head):
    """Trained through the train job: y_sd follows the true noise sd, the checkpoint rebuilds
    the head and gives the written means, and the sd goes through evaluate's calibration."""
    import torch

    from biomol_dl import evaluate, train_job, training
    from biomol_dl.models import mlp

    noise_sd, _ = _hetero_problem(tmp_path)
    out = _train(tmp_path, mlp, {"estimate": head})
    pred = pd.read_csv(out / "predictions.csv")
    assert (pred["y_sd"] > 0).all()
    assert U.sd_error_spearman(noise_sd, np.zeros_like(noise_sd), pred["y_sd"]) > 0.8
    model, ckpt = train_job.load_trained(out / "model.pt", mlp)
    assert ckpt["head"] == head and ckpt["n_outputs"] == 1
    features = torch.load(tmp_path / "features.pt", weights_only=True)
    loader = mlp.make_loader(mlp.build_datasets(features, np.zeros((400, 1), np.float32)),
                             batch_size=64, shuffle=False, seed=0)  # fmt: skip
    scaler = training.TargetScaler.from_dict(ckpt["target_scaler"])
    means, sd = training.predict_distribution(model, loader, task="regression",
                                              target_scaler=scaler, head=head)  # fmt: skip
    np.testing.assert_allclose(means[:, 0], pred["y_pred"], atol=1e-6)
    np.testing.assert_allclose(sd[:, 0], pred["y_sd"], rtol=1e-5)
    block = evaluate.calibrated_test_metrics(pred, "regression", U.Settings(estimate=head))
    assert block["settings"]["estimate_used"] == "y_sd"
    assert {"interval_coverage", "nll", "ence", "sd_spearman"} <= set(block["mean"])


def test_ensemble_members_train_on_the_split_only(tmp_path):
    """Every member of a within-split ensemble sees only train rows (in its training batches and
    in prepare_model); members differ; y_pred / y_sd are their mean and sd; model.pt keeps them
    and predicts their mean."""
    import torch

    from biomol_dl import train_job, training
    from biomol_dl.hashing import sha256_json
    from biomol_dl.models import mlp

    _, split = _hetero_problem(tmp_path, n=120)
    seen: list[set[int]] = []

    class Spy(mlp.MLPFamily):
        def make_loader(self, subset, *, batch_size, shuffle, seed, pin_memory=False):
            if shuffle:  # a training loader: note which clean rows it serves
                seen[-1].update(int(i) for i in subset.indices)
            return super().make_loader(subset, batch_size=batch_size, shuffle=shuffle,
                                       seed=seed, pin_memory=pin_memory)  # fmt: skip

        def prepare_model(self, model, train_subset):
            seen.append(set(int(i) for i in train_subset.indices))
            super().prepare_model(model, train_subset)

    out = _train(tmp_path, Spy, {"estimate": "ensemble", "members": 3}, epochs=3)
    train_rows = set(np.flatnonzero(split == "train").tolist())
    assert len(seen) == 3 and all(rows == train_rows for rows in seen)
    ckpt = torch.load(out / "model.pt", weights_only=True)
    assert [m["seed"] for m in ckpt["members"]] == [train_job.member_seed(0, k) for k in (1, 2)]
    train_ids = [f"m{i}" for i in sorted(train_rows)]
    assert all(m["train_ids_sha256"] == sha256_json(train_ids) for m in ckpt["members"])
    features = torch.load(tmp_path / "features.pt", weights_only=True)
    model, _ = train_job.load_trained(out / "model.pt", mlp)
    loader = mlp.make_loader(mlp.build_datasets(features, np.zeros((120, 1), np.float32)),
                             batch_size=64, shuffle=False, seed=0)  # fmt: skip
    scaler = training.TargetScaler.from_dict(ckpt["target_scaler"])
    draws = []
    for state in [ckpt["state_dict"]] + [m["state_dict"] for m in ckpt["members"]]:
        model.load_state_dict(state)
        draws.append(training.predict(model, loader, task="regression", target_scaler=scaler))
    draws = np.stack(draws)[:, :, 0]
    assert np.ptp(draws, axis=0).min() > 0  # members differ in their initialization
    pred = pd.read_csv(out / "predictions.csv")
    np.testing.assert_allclose(pred["y_pred"], draws.mean(axis=0), atol=1e-9)
    np.testing.assert_allclose(pred["y_sd"], draws.std(axis=0, ddof=1), atol=1e-9)


@pytest.mark.parametrize("estimate", [{"estimate": "mve"}, {"estimate": "ensemble", "members": 2}])
def test_dmpnn_estimates_reach_the_predict_path(tmp_path, estimate):
    """A D-MPNN with a variance head or as a within-split ensemble: predictions.csv carries
    y_sd, and predicting the same SMILES from model.pt alone (the predict rule's path) gives the
    written y_pred (the head's means; the members' mean)."""
    import test_gnn

    from biomol_dl import train_job
    from biomol_dl.models import gnn

    spec = {"type": "graph"}
    test_gnn.write_job(tmp_path, spec)
    params = {**test_gnn.SMALL, "arch": "dmpnn", "epochs": 3, "batch_size": 4, "device": "cpu"}
    train_job.run_training(
        gnn, clean_csv=tmp_path / "clean.csv", split_csv=tmp_path / "split.csv",
        features_pt=tmp_path / "features.pt",
        model_spec={"name": "m", "family": "gnn", "featurizer": "f", "featurizer_spec": spec,
                    "params": params, "uncertainty": estimate},
        task="regression", label_columns=["logp"], seed=0, out_model=tmp_path / "model.pt",
        out_predictions=tmp_path / "predictions.csv", out_history=tmp_path / "history.csv",
    )  # fmt: skip
    written = pd.read_csv(tmp_path / "predictions.csv")
    assert (written["y_sd"] > 0).all()
    clean = pd.read_csv(tmp_path / "clean.csv")
    again = gnn.GNNFamily().predict(tmp_path / "model.pt", clean["input"].tolist())
    np.testing.assert_allclose(again["y_pred"], written["y_pred"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(again["y_model_sd"], written["y_sd"], rtol=1e-4, atol=1e-6)


def test_new_inputs_get_intervals_scaled_by_the_models_own_sd():
    """With y_model_sd (a variance head, a within-split ensemble) predict's interval is the
    seeds' mean normalized quantile times that sd; without it the absolute half-width."""
    from biomol_dl.domain import Reference
    from biomol_dl.evaluate import calibrated_test_metrics
    from biomol_dl.trust import add_trust_columns

    rng = np.random.default_rng(3)
    blocks = {s: calibrated_test_metrics(_long("regression", rng), "regression", U.Settings())
              for s in (0, 1)}  # fmt: skip
    frame = pd.DataFrame({"task": "t0", "y_pred": [0.2, 0.5], "y_model_sd": [0.1, 1.0]})
    args = dict(task="regression", inputs=["CCO", "CCN"], calibrations=blocks,
                reference=Reference(["CCO"], "smiles"))  # fmt: skip
    out = add_trust_columns(frame, **args)
    fitted = [b["calibrators"]["t0"] for b in blocks.values()]
    q = np.mean([f["interval"]["q"] for f in fitted])
    scale = np.mean([f["variance_scale"]["scale"] for f in fitted])
    np.testing.assert_allclose(out["y_hi"] - out["y_pred"], q * frame["y_model_sd"])
    np.testing.assert_allclose(out["y_sd_calibrated"], scale * frame["y_model_sd"])
    plain = add_trust_columns(frame.drop(columns="y_model_sd"), **args)
    q_abs = np.mean([f["abs_interval"]["q"] for f in fitted])
    np.testing.assert_allclose(plain["y_hi"] - plain["y_lo"], 2 * q_abs)
    assert "y_sd_calibrated" not in plain


def test_an_ensemble_stopped_in_a_later_member_resumes_to_the_same_predictions(tmp_path):
    """SIGTERM while member 1 trains: the job stops with every member's state saved, and the
    rerun gives exactly the predictions of an uninterrupted run, leaving no resume state."""
    import os
    import signal

    from biomol_dl import training
    from biomol_dl.models import mlp

    _hetero_problem(tmp_path, n=120)
    built = []

    class Stopping(mlp.MLPFamily):
        stop = False

        def prepare_model(self, model, train_subset):
            built.append(model)
            super().prepare_model(model, train_subset)

        def make_loader(self, subset, *, batch_size, shuffle, seed, pin_memory=False):
            loader = super().make_loader(subset, batch_size=batch_size, shuffle=shuffle,
                                         seed=seed, pin_memory=pin_memory)  # fmt: skip
            if not (shuffle and Stopping.stop and len(built) == 2 and seed % 1000 == 2):
                return loader
            Stopping.stop = False
            os.kill(os.getpid(), signal.SIGTERM)  # in member 1's second epoch
            return loader

    ensemble = {"estimate": "ensemble", "members": 2}
    reference = _train(tmp_path, Stopping, ensemble, epochs=3, tag="ref")
    resume = tmp_path / "resume"
    Stopping.stop, built[:] = True, []
    with pytest.raises(training.Preempted):
        _train(tmp_path, Stopping, ensemble, epochs=3, tag="run", resume_dir=resume)
    assert (resume / "last.pt").is_file() and (resume / "member1" / "last.pt").is_file()
    built[:] = []
    again = _train(tmp_path, Stopping, ensemble, epochs=3, tag="run", resume_dir=resume)
    pd.testing.assert_frame_equal(pd.read_csv(again / "predictions.csv"),
                                  pd.read_csv(reference / "predictions.csv"))  # fmt: skip
    assert not resume.exists()
