"""The best model of each dataset as an MLflow `pyfunc` model in the store's model registry.

For the report_dataset rule (workflow/rules/report.smk) and for anyone loading the model. The
best model is chosen on the VALIDATION split's primary metric (the leaderboard's
`val_<metric>_mean`; never on test), and all its seeds form the ensemble, as in the predict rule.
`run_register` writes results/registry/<dataset>/model/, a standard MLflow model folder:

  MLmodel                     the pyfunc flavour, loader_module biomol_dl.registry
  data/data/spec.json         dataset, model, family, kind, task, input and id columns, the
                              dataset's validation policy, the featurizer spec, seeds, choice
  data/data/summary.json      the dataset's validate summary (class names for multiclass)
  data/data/seed<N>/<file>    each seed's model file (the featurizer's settings live inside it)
  requirements.txt            the pins of the project's requirements.txt

and registers it as a new version of `<experiment prefix>.<dataset>` (`biomol-dl.<dataset>` by
default) through biomol_dl.tracking (in spool mode the Snakemake main process, the store's only
writer, does the registering when it syncs the spool). Then, with the same environment:

    import mlflow, pandas as pd
    mlflow.set_tracking_uri("sqlite:///results/mlflow/mlflow.db")
    model = mlflow.pyfunc.load_model("models:/biomol-dl.b3db_logbb/latest")
    model.predict(pd.DataFrame({"smiles": ["CCO", "not a smiles"]}))

returns what the predict rule writes for the same rows: its predictions.csv rows with
status `predicted`, and its rejects.csv rows with status `rejected` and the reason, ordered by
input row (`row`, 1-based). `predict_frame` does this by running the predict rule's own function
(biomol_dl.predict.run_predict) on the rows, so the two cannot differ.

The featurizer runs from the seed model files (each saves its featurizer's settings) with the
biomol_dl package of the loading environment (`pip install -e .` of the same commit: the
model's metadata names it), as the predict rule does.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from biomol_dl.io import DataError
from biomol_dl.logutil import get
from biomol_dl.metrics import LOWER_IS_BETTER

log = get(__name__)

STATUS_PREDICTED = "predicted"
STATUS_REJECTED = "rejected"


def registered_name(dataset: str, prefix: str = "biomol-dl") -> str:
    """The registry name of a dataset's best model: `<experiment prefix>.<dataset>`."""
    return f"{prefix}.{dataset}"


def choose_best(leaderboard_csv: str | Path, primary_metric: str) -> tuple[str, float]:
    """(model, validation score) of the best model by the validation primary metric.

    Raises ValueError naming the file when the leaderboard has no validation column or no
    model has a validation score; ties go to the first model in the leaderboard's order.
    """
    table = pd.read_csv(leaderboard_csv)
    column = f"val_{primary_metric}_mean"
    if column not in table.columns:
        raise ValueError(
            f"{leaderboard_csv}: no {column} column; the best model is chosen on the "
            "validation split and the metrics files hold none"
        )
    scores = pd.to_numeric(table[column], errors="coerce")
    if scores.notna().sum() == 0:
        raise ValueError(f"{leaderboard_csv}: no model has a validation {primary_metric}")
    lower = primary_metric in LOWER_IS_BETTER
    best = (scores if lower else -scores).fillna(math.inf).to_numpy().argmin()
    return str(table["model"].iloc[best]), float(scores.iloc[best])


def run_register(
    *,
    dataset: str,
    leaderboard_csv: str | Path,
    primary_metric: str,
    spec: Mapping[str, Any],
    models: Mapping[str, Mapping[str, Any]],
    validate_summary: str | Path,
    out_dir: str | Path,
    out_json: str | Path,
    name: str,
    run: Any = None,
) -> dict[str, Any]:
    """The report_dataset rule's last step: choose, write the pyfunc folder, register it.

    spec: the dataset's kind, task, input_column, id_column and validation.
    models: {model: {"family", "featurizer": spec, "files": {seed: model file}}} for every
    model of the dataset. run: the job's tracking.JobRun (None: write the folder only).
    """
    from biomol_dl import tracking

    model, score = choose_best(leaderboard_csv, primary_metric)
    chosen = models[model]
    files = {int(s): Path(p) for s, p in chosen["files"].items()}
    out_dir, out_json = Path(out_dir), Path(out_json)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        for seed, path in sorted(files.items()):
            (data / f"seed{seed}").mkdir()
            shutil.copy2(path, data / f"seed{seed}" / path.name)
        shutil.copy2(validate_summary, data / "summary.json")
        bundle = {
            "dataset": dataset,
            "model": model,
            "family": chosen["family"],
            "featurizer": chosen.get("featurizer"),
            "kind": spec["kind"],
            "task": spec["task"],
            "input_column": spec["input_column"],
            "id_column": spec.get("id_column"),
            "validation": dict(spec.get("validation") or {}),
            "seeds": sorted(files),
            "model_files": {str(s): f"seed{s}/{p.name}" for s, p in sorted(files.items())},
            "chosen_on": {"split": "val", "metric": primary_metric, "value": score},
            "registered_name": name,
        }
        (data / "spec.json").write_text(json.dumps(bundle, indent=1, default=str) + "\n")
        package = Path(__file__).resolve().parent
        tracking.save_pyfunc_model(
            out_dir,
            loader_module="biomol_dl.registry",
            data_path=data,
            pip_requirements=_requirements(package),
            metadata={
                "biomol_dl": {
                    **{k: bundle[k] for k in ("dataset", "model", "seeds")},
                    "git_commit": tracking.git_state()[0],
                }
            },  # fmt: skip
        )
    tags = {"dataset": dataset, "model": model, "family": chosen["family"],
            "seeds": ",".join(map(str, sorted(files))),
            f"val_{primary_metric}": f"{score:.6g}"}  # fmt: skip
    if run is not None:
        run.register_model(out_dir, name, tags=tags)
    record = {**{k: bundle[k] for k in ("dataset", "model", "family", "seeds")},
              "registered_name": name, "chosen_on": bundle["chosen_on"],
              "model_dir": str(out_dir), "registered": bool(run is not None and run.active)}  # fmt: skip
    out_json.write_text(json.dumps(record, indent=1) + "\n")
    log.info("%s: best model on validation %s = %.4f is %s (%d seed(s)); %s %s", dataset,
             primary_metric, score, model, len(files), name,
             "queued for the model registry" if record["registered"] else "not registered "
             "(tracking is off)")  # fmt: skip
    return record


def _requirements(package: Path) -> list[str]:
    """The project's pinned requirements (requirements.txt beside scripts/), if present."""
    path = package.parents[1] / "requirements.txt"
    if not path.is_file():
        return []
    lines = (line.split("#")[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


# ------------------------------------------------------------------------ the loaded model


class EnsembleModel:
    """What `mlflow.pyfunc.load_model` wraps: the spec and model files of one pyfunc folder."""

    def __init__(self, data_path: str | Path):
        self.data = Path(data_path)
        self.spec = json.loads((self.data / "spec.json").read_text())

    def predict(self, model_input: Any, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
        threads = int((params or {}).get("threads", 1))
        files = {int(s): self.data / p for s, p in self.spec["model_files"].items()}
        return predict_frame(self.spec, files, model_input, self.data / "summary.json", threads)


def _load_pyfunc(data_path: str) -> EnsembleModel:
    """The pyfunc loader_module hook: MLflow calls it with the model's data folder."""
    return EnsembleModel(data_path)


def predict_frame(
    spec: Mapping[str, Any],
    model_files: Mapping[int, str | Path],
    data: Any,
    validate_summary: str | Path | None = None,
    threads: int = 1,
) -> pd.DataFrame:
    """Predictions for a DataFrame of SMILES or sequences, rejects included, in input order.

    data: a DataFrame with the dataset's input column (or a single column, or a list of
    strings), optionally its id column. Runs biomol_dl.predict.run_predict on the rows, so the
    result is the predict rule's predictions.csv (status `predicted`, reason empty) and its
    rejects.csv (status `rejected`, its reason; `input` is the value as given), sorted by `row`.
    """
    from biomol_dl.predict import run_predict

    frame = _as_frame(data, spec["input_column"])
    id_column = spec.get("id_column") if spec.get("id_column") in frame.columns else None
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # Every field quoted: an empty input is a row (`""`), never a blank line the reader skips.
        frame.to_csv(tmp / "input.csv", index=False, quoting=csv.QUOTE_ALL)
        out = {k: tmp / f"{k}.{ext}" for k, ext in
               (("predictions", "csv"), ("rejects", "csv"), ("summary", "json"))}  # fmt: skip
        try:
            run_predict(
                input_path=tmp / "input.csv",
                input_format_name="csv",
                input_column=spec["input_column"],
                id_column=id_column,
                kind=spec["kind"],
                validation=spec.get("validation"),
                task=spec["task"],
                validate_summary=validate_summary,
                family=spec["family"],
                model_files={int(s): str(p) for s, p in model_files.items()},
                out_predictions=out["predictions"],
                out_rejects=out["rejects"],
                out_summary=out["summary"],
                threads=threads,
            )
            predicted = pd.read_csv(out["predictions"], dtype={"id": str})
        except DataError:
            if not out["rejects"].is_file():  # not the "no valid rows" case: a real error
                raise
            predicted = pd.DataFrame(columns=["id", "row", "input"])
        rejects = pd.read_csv(out["rejects"], dtype={"id": str, "value": str})
    predicted = predicted.assign(status=STATUS_PREDICTED, reason="")
    rejected = pd.DataFrame(
        {
            "id": rejects.get("id", pd.Series(dtype=str)),
            "row": rejects["row"],
            "input": rejects.get("value", pd.Series(dtype=str)),
            "status": STATUS_REJECTED,
            "reason": rejects["reason"],
        }
    )
    parts = [p for p in (predicted, rejected) if len(p)]
    if not parts:
        return predicted
    combined = pd.concat(parts, ignore_index=True, sort=False)
    return combined.sort_values("row", kind="stable").reset_index(drop=True)


def _as_frame(data: Any, input_column: str) -> pd.DataFrame:
    if isinstance(data, pd.Series):
        data = data.to_frame(name=input_column)
    elif not isinstance(data, pd.DataFrame):
        data = pd.DataFrame({input_column: list(data)})
    if input_column not in data.columns:
        if data.shape[1] != 1:
            raise ValueError(
                f"the input has no {input_column!r} column (columns: "
                f"{', '.join(map(str, data.columns))}); name the column of inputs {input_column!r}"
            )
        data = data.rename(columns={data.columns[0]: input_column})
    return data.reset_index(drop=True)
