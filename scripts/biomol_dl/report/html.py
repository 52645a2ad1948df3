"""results/report/index.html: one self-contained page for the whole run.

For the `report` rule, and for people opening the file from disk. Per dataset: the data summary
(rows in, kept, rejects by reason, label distribution, split sizes), the leaderboard with the
paired comparisons, every model's plots and its MLflow run ids. PNGs are embedded as base64, so
the page needs no server, no network and no other file; the SVG links point to files beside it
inside results/report/. No JavaScript, no external CSS or fonts.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
import os
import struct
from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any

from biomol_dl.logutil import get
from biomol_dl.metrics import LOWER_IS_BETTER

log = get(__name__)

CSS = """
:root { --ink: #1d2329; --muted: #5b6670; --line: #d9dee3; --band: #f4f6f8; --accent: #0072b2; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       color: var(--ink); background: #fff; }
header.top { background: #17324d; color: #fff; padding: 18px 32px 12px; }
header.top h1 { margin: 0 0 4px; font-size: 22px; font-weight: 600; }
header.top p { margin: 2px 0; color: #c9d6e3; }
nav { position: sticky; top: 0; z-index: 2; background: #fff; border-bottom: 1px solid var(--line);
      padding: 8px 32px; }
nav a { margin-right: 18px; color: var(--accent); text-decoration: none; font-weight: 600; }
main { max-width: 1440px; margin: 0 auto; padding: 8px 32px 48px; }
section.dataset { border-top: 3px solid #17324d; margin-top: 28px; padding-top: 6px; }
h2 { font-size: 20px; margin: 10px 0 4px; }
h3 { font-size: 16px; margin: 22px 0 8px; color: #17324d; }
h4 { font-size: 15px; margin: 18px 0 6px; }
.muted { color: var(--muted); }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(260px, 1fr)); gap: 14px; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: 10px 14px; background: #fff; }
.card h4 { margin: 0 0 6px; font-size: 13px; text-transform: uppercase; letter-spacing: .04em;
           color: var(--muted); }
.big { font-size: 20px; font-weight: 600; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { padding: 4px 8px; border-bottom: 1px solid var(--line); text-align: right; }
td.text { overflow-wrap: anywhere; }
td .sd { white-space: nowrap; }
table.leaderboard, table.per-task, table.per-seed, table.uncertainty { width: 100%; }
th { background: var(--band); font-weight: 600; white-space: normal; vertical-align: bottom; }
td .sd { color: var(--muted); font-size: 12px; }
td.model { min-width: 8em; }
table.leaderboard, table.per-task, table.uncertainty { font-size: 13px; }
td.text, th.text { text-align: left; }
tbody tr:nth-child(even) td { background: #fafbfc; }
table.leaderboard td.best, table.uncertainty td.best { font-weight: 700; }
table.leaderboard tr.baseline td.model::after { content: " baseline"; font-size: 11px;
  color: #8a5a00; background: #fff3d6; border-radius: 3px; padding: 0 4px; margin-left: 4px; }
th.primary { background: #e3eef7; }
.scroll { overflow-x: auto; max-width: 100%; }
.split-other { color: var(--muted); }
.structures { display: grid; grid-template-columns: repeat(auto-fill, minmax(230px, 1fr));
              gap: 10px; margin: 8px 0 4px; }
.molecule { border: 1px solid var(--line); border-radius: 6px; padding: 6px; font-size: 12.5px; }
.molecule svg { display: block; max-width: 100%; height: auto; margin: 0 auto; }
.molecule .values { display: flex; flex-wrap: wrap; gap: 2px 10px; justify-content: center; }
.molecule .id { font-family: ui-monospace, monospace; font-size: 11.5px; color: var(--muted);
                overflow-wrap: anywhere; text-align: center; }
.note { max-width: 980px; color: var(--muted); font-size: 13px; }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
              font-size: 12px; }
.plots { display: grid; grid-template-columns: repeat(auto-fill, minmax(380px, 1fr)); gap: 16px; }
figure { margin: 0; border: 1px solid var(--line); border-radius: 6px; padding: 8px;
         background: #fff; }
figure img { display: block; max-width: 100%; height: auto; margin: 0 auto; }
figure.wide { grid-column: span 2; }
figure.wide img { max-width: min(100%, 900px); }
@media (max-width: 900px) { figure.wide { grid-column: auto; } }
figcaption { font-size: 12.5px; color: var(--muted); margin-top: 6px; }
figcaption b { color: var(--ink); }
details { margin: 10px 0; }
summary { cursor: pointer; color: var(--accent); font-weight: 600; }
footer { max-width: 1440px; margin: 0 auto; padding: 16px 32px 40px; color: var(--muted);
         border-top: 1px solid var(--line); font-size: 12.5px; }
"""


# ------------------------------------------------------------------------------ formatting


def _num(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    value = float(value)
    if value != 0 and abs(value) < 10 ** (-digits):
        return f"{value:.1e}"
    return f"{value:.{digits}f}"


def _mean_sd(mean: Any, sd: Any, stacked: bool = False) -> str:
    """`mean ± sd`; stacked puts the sd on a line of its own (narrow columns in wide tables)."""
    if mean is None:
        return "–"
    if sd is None:
        return _num(mean)
    return _num(mean) + ("<br>" if stacked else "") + f"<span class='sd'> ± {_num(sd)}</span>"


def _name(name: str) -> str:
    """An escaped model or task name that may break after `_`, `-` or `.` (long names wrap)."""
    text = escape(str(name))
    for mark in ("_", "-", "."):
        text = text.replace(mark, mark + "<wbr>")
    return text


def _p(value: Any) -> str:
    if value is None:
        return "–"
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def _signed(value: Any) -> str:
    return "–" if value is None else ("+" if value > 0 else "") + _num(value)


def _png_size(data: bytes) -> tuple[int, int] | None:
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        return None
    return struct.unpack(">II", data[16:24])


def _img(png: Path, alt: str) -> str:
    data = png.read_bytes()
    size = _png_size(data)
    if size is None:
        raise ValueError(f"{png}: not a PNG file")
    encoded = base64.b64encode(data).decode("ascii")
    return (
        f'<img src="data:image/png;base64,{encoded}" alt="{escape(alt)}" '
        f'width="{size[0]}" height="{size[1]}">'
    )


def _rel(path: Path, base: Path) -> str:
    return Path(os.path.relpath(path.resolve(), base.resolve())).as_posix()


def _short(run_id: str | None) -> str:
    if not run_id:
        return '<span class="muted">n/a</span>'
    return f'<span class="mono" title="{escape(run_id)}">{escape(run_id[:8])}</span>'


# -------------------------------------------------------------------------------- sections


def _data_section(name: str, report: Mapping[str, Any]) -> str:
    d = report["data"]
    rows = [
        f'<div class="card"><h4>Validation</h4><div class="big">{d["kept"]} of {d["rows_in"]} '
        f"rows kept</div><div>{d['rejected']} rejected"
        + (
            f", {d['duplicates']['rows_merged']} duplicates merged"
            if (d.get("duplicates") or {}).get("rows_merged")
            else ""
        )
        + "</div>"
    ]
    by_reason = d.get("by_reason") or {}
    if by_reason:
        items = "".join(
            f'<tr><td class="text">{escape(str(k))}</td><td>{v}</td></tr>'
            for k, v in by_reason.items()
        )
        rows.append(
            f'<table class="rejects"><thead><tr><th class="text">reject reason</th>'
            f"<th>rows</th></tr></thead><tbody>{items}</tbody></table>"
        )
    else:
        rows.append('<div class="muted">no rejected rows</div>')
    source = (d.get("source") or {}).get("origin")
    if source:
        rows.append(f'<div class="muted">source: <code>{escape(str(source))}</code></div>')
    cards = ["".join(rows) + "</div>"]

    cards.append(
        f'<div class="card"><h4>Labels ({escape(str(d["task"]))})</h4>{_labels_table(d)}'
        f"{_input_stats(d)}</div>"
    )
    split_rows = "".join(
        f"<tr><td>{s['seed']}</td><td class='text'>{escape(str(s['strategy']))}</td>"
        f"<td>{_num(s['train'])}</td><td>{_num(s['val'])}</td><td>{_num(s['test'])}</td></tr>"
        for s in d.get("splits") or []
    )
    cards.append(
        '<div class="card"><h4>Splits</h4><table><thead><tr><th>seed</th>'
        '<th class="text">strategy</th><th>train</th><th>val</th><th>test</th></tr></thead>'
        f"<tbody>{split_rows}</tbody></table></div>"
    )
    return f'<h3 id="{escape(name)}-data">Data</h3><div class="cards">{"".join(cards)}</div>'


def _labels_table(d: Mapping[str, Any]) -> str:
    stats = d.get("label_stats") or {}
    if not stats:
        return '<div class="muted">no label statistics</div>'
    if d["task"] == "regression":
        head = (
            "<th class='text'>label</th><th>n</th><th>mean</th><th>sd</th><th>min</th><th>max</th>"
        )
        body = "".join(
            f"<tr><td class='text'>{escape(str(name))}</td><td>{_num(s.get('n'))}</td>"
            f"<td>{_num(s.get('mean'))}</td><td>{_num(s.get('sd'))}</td>"
            f"<td>{_num(s.get('min'))}</td><td>{_num(s.get('max'))}</td></tr>"
            for name, s in stats.items()
        )
    else:
        keys = list(dict.fromkeys(k for s in stats.values() for k in s))
        shown = {"0": "0 (negative)", "1": "1 (positive)"} if d["task"] != "multiclass" else {}
        if d.get("positive_label") and d["task"] == "binary":
            shown["1"] = f"1 ({d['positive_label']})"
        if len(keys) > 4:  # many classes: one row per class, so the card never scrolls
            names = list(stats)
            totals = {n: sum(v for v in stats[n].values() if isinstance(v, int)) for n in names}
            head = "<th class='text'>class</th>" + "".join(
                f"<th>{escape(str(n))}</th><th>share</th>" for n in names
            )
            body = "".join(
                f"<tr><td class='text'>{escape(shown.get(k, k))}</td>"
                + "".join(
                    f"<td>{_num(stats[n].get(k))}</td><td>{_share(stats[n].get(k), totals[n])}</td>"
                    for n in names
                )
                + "</tr>"
                for k in keys
            )
            return (
                f"<table class='labels'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
            )
        head = "<th class='text'>label</th>" + "".join(
            f"<th>{escape(shown.get(k, k))}</th>" for k in keys
        )
        body = "".join(
            f"<tr><td class='text'>{escape(str(name))}</td>"
            + "".join(f"<td>{_num(s.get(k))}</td>" for k in keys)
            + "</tr>"
            for name, s in stats.items()
        )
    return f"<table class='labels'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _share(count: Any, total: int) -> str:
    return "–" if not isinstance(count, int) or not total else f"{100 * count / total:.1f} %"


def _input_stats(d: Mapping[str, Any]) -> str:
    stats = d.get("input_stats") or {}
    for key, label in (("heavy_atoms", "heavy atoms"), ("length", "sequence length")):
        s = stats.get(key)
        if s:
            return (
                f'<div class="muted" style="margin-top:6px">{label}: min {_num(s["min"], 0)}, '
                f"median {_num(s['median'], 1)}, max {_num(s['max'], 0)}</div>"
            )
    return ""


SPLIT_NAMES = {"val": "validation", "test": "test"}
PER_TASK_MODELS = 8  # columns of the per-task table


def _split(split: str) -> str:
    return SPLIT_NAMES.get(split, split)


def _leaderboard_section(name: str, report: Mapping[str, Any], base: Path) -> str:
    """The dataset's leaderboard: how the models were chosen, the table of the shown models,
    the registry note, the ranking plot, then the uncertainty, per-task and per-seed tables."""
    info = report["ranking"]
    metric, split = info["primary_metric"], info["rank_split"]
    other = "val" if split == "test" else "test"
    metrics = info["metrics"]
    rows = [r for r in report["leaderboard"] if r["shown"]]
    hidden = len(report["leaderboard"]) - len(rows)
    # The ranking split's primary metric, the other split's beside it, then the other metrics.
    columns = [(split, metric), (other, metric)] + [(split, m) for m in metrics if m != metric]
    bests = _column_bests(rows, columns)
    head = _leaderboard_head(columns, split, metric)
    body = [_leaderboard_row(r, columns, bests, report) for r in rows]
    return (
        f'<h3 id="{escape(name)}-leaderboard">Leaderboard</h3>'
        + _ranking_note(info, hidden)
        + f"<table class='leaderboard' id='leaderboard-{escape(name)}'>"
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
        + _registry_note(report.get("_registry"))
        + _leaderboard_figure(name, report, base, split, metric)
        + _uncertainty_table(name, rows)
        + _per_task_details(report, rows)
        + _per_seed_details(report)
    )


def _column_bests(
    rows: Sequence[Mapping[str, Any]], columns: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], Any]:
    """The best mean of each (split, metric) column over the rows; None where no row has one."""

    def best_of(col: str, m: str) -> Any:
        values = [r[col] for r in rows if r.get(col) is not None]
        if not values:
            return None
        return min(values) if m in LOWER_IS_BETTER else max(values)

    return {(s, m): best_of(f"{s}_{m}_mean", m) for s, m in columns}


def _leaderboard_head(columns: Sequence[tuple[str, str]], split: str, metric: str) -> str:
    """The header cells: the ranking column highlighted, the other split's muted."""
    return (
        "<th>rank</th><th class='text'>model</th><th class='text'>family</th><th>seeds</th>"
        + "".join(
            f"<th class='{'primary' if (s, m) == (split, metric) else ''}"
            f"{' split-other' if s != split else ''}'>{escape(_split(s))} {escape(m)}</th>"
            for s, m in columns
        )
        + f"<th title='model minus best in {escape(split)} {escape(metric)}, mean over "
        "paired seeds'>Δ vs best</th><th>p-value</th><th class='text'>paired test</th>"
        "<th class='text'>MLflow train runs</th>"
    )


def _leaderboard_row(
    r: Mapping[str, Any],
    columns: Sequence[tuple[str, str]],
    bests: Mapping[tuple[str, str], Any],
    report: Mapping[str, Any],
) -> str:
    """One model's row: rank, model, family, seeds, its mean ± sd per column (the column's best
    in bold), the paired test against the best model and its MLflow train runs."""
    cells = []
    for s, m in columns:
        mean = r.get(f"{s}_{m}_mean")
        best = mean is not None and bests[(s, m)] is not None and mean == bests[(s, m)]
        cells.append(
            f"<td class='{'best' if best else ''}'>"
            f"{_mean_sd(mean, r.get(f'{s}_{m}_sd'), stacked=True)}</td>"
        )
    reference = r["model"] == report["ranking"].get("best_model")
    return (
        f"<tr class='{'baseline' if r['baseline'] else ''}'><td>{r['rank']}</td>"
        + _model_cell(r)
        + f"<td class='text'>{_name(r['family'])}</td><td>{r['n_seeds']}</td>"
        + "".join(cells)
        + _vs_best_cells(r, reference)
        + f"<td class='text'>{_train_runs_cell(report, r['model'])}</td></tr>"
    )


def _model_cell(r: Mapping[str, Any]) -> str:
    """The model's name, with the checkpoint it starts from and its tuning below it."""
    return (
        f"<td class='text model'>{_name(r['model'])}"
        + (f"<br><span class='muted init'>{escape(r['init'])}</span>" if r.get("init") else "")
        + (f"<br><span class='muted tuned'>{escape(r['tuned'])}</span>" if r.get("tuned") else "")
        + "</td>"
    )


def _vs_best_cells(r: Mapping[str, Any], reference: bool) -> str:
    """Δ vs best, p-value and the paired test (n pairs); the best model is the reference."""
    if reference:
        return "<td>reference</td><td>–</td><td class='text muted'>best model</td>"
    test = r.get("vs_best_test_name") or "none"
    return (
        f"<td>{_signed(r.get('vs_best_mean_diff'))}</td>"
        f"<td>{_p(r.get('vs_best_p_value'))}</td>"
        f"<td class='text' title='{escape(r.get('vs_best_note') or '')}'>"
        f"{escape(test)}{' (n=' + str(r['vs_best_n_pairs']) + ')' if r.get('vs_best_n_pairs') else ''}</td>"
    )


def _train_runs_cell(report: Mapping[str, Any], model: str) -> str:
    """The model's MLflow train run id per seed; one n/a when no run id was found."""
    runs = report.get("run_ids", {}).get(model, {})
    if not any(ids.get("train") for ids in runs.values()):
        return _short(None)
    return "<br>".join(
        f"<span class='muted'>s{escape(seed)}</span>&nbsp;{_short(ids.get('train'))}"
        for seed, ids in runs.items()
    )


def _ranking_note(info: Mapping[str, Any], hidden: int) -> str:
    """How the models were chosen and ranked (warning when on test), and where the models
    beyond the top k are."""
    metric = info["primary_metric"]
    better = "higher" if info["higher_is_better"] else "lower"
    more = (
        f" {hidden} more model(s) beyond the top {info['top_k']} are in leaderboard.csv."
        if hidden
        else ""
    )
    if info["rank_split"] == "test":
        chosen = (
            f"Chosen and ranked on the <b>test</b> split's {escape(metric)} ({better} is "
            "better; report.rank_split: test): the best model is selected on the data that "
            "also reports it, so its test score is optimistic. "
        )
    else:
        chosen = (
            f"Chosen and ranked on the <b>validation</b> split's {escape(metric)} ({better} "
            "is better); the test split's is shown beside it and never used to choose. "
        )
    return (
        f"<p class='note'>{chosen}Mean ± sd over seeds; the best value of each column in "
        f"bold. {escape(info['comparison_note'])}{more}</p>"
    )


def _leaderboard_figure(
    name: str, report: Mapping[str, Any], base: Path, split: str, metric: str
) -> str:
    """The ranking plot, embedded as a PNG, with a link to its SVG beside the page."""
    png = Path(report["_folder"]) / report["leaderboard_png"]
    return (
        "<figure class='wide' style='margin-top:14px'>"
        f"{_img(png, f'{name}: models ranked by {split} {metric}')}<figcaption>"
        f"<b>Leaderboard.</b> test (filled) and validation (open) {escape(metric)}"
        f" per model, mean ± sd; dots are single seeds. "
        f"<a href='{escape(_rel(png.with_name(report['leaderboard_svg']), base))}'>SVG</a>"
        "</figcaption></figure>"
    )


# The calibrated uncertainty metrics of the test split (metrics.json `test_calibrated`, fitted on
# validation): (metric, heading, what is better: low, high, or None for the nominal coverage).
UNCERTAINTY_COLUMNS = (
    ("interval_coverage", "interval coverage", "nominal"),
    ("interval_width", "interval width", "low"),
    ("abs_interval_coverage", "abs. interval coverage", "nominal"),
    ("abs_interval_width", "abs. interval width", "low"),
    ("miscalibration_area", "miscal. area", "low"),
    ("ence", "ENCE", "low"),
    ("nll", "NLL", "low"),
    ("sd_spearman", "Spearman sd / |error|", "high"),
    ("raw_ece", "ECE raw", "low"),
    ("ece", "ECE", "low"),
    ("brier", "Brier", "low"),
    ("set_size", "set size", "low"),
    ("set_coverage", "set coverage", "nominal"),
)


def _uncertainty_table(name: str, rows: Sequence[Mapping[str, Any]]) -> str:
    """The shown models' calibrated test metrics, mean ± sd over seeds; nothing when none has
    them. Best per column in bold: nearest the nominal coverage, lowest or highest."""
    key = "test_calibrated_{}_mean".format
    columns = [c for c in UNCERTAINTY_COLUMNS if any(r.get(key(c[0])) is not None for r in rows)]
    if not columns:
        return ""

    def distance(r: Mapping[str, Any], metric: str, better: str) -> float | None:
        value = r.get(key(metric))
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return None
        if better == "nominal":
            nominal = r.get("test_calibrated_coverage")
            return None if nominal is None else abs(value - nominal)
        return value if better == "low" else -value

    best = {}
    for metric, _, better in columns:
        values = [d for r in rows if (d := distance(r, metric, better)) is not None]
        best[metric] = min(values) if values else None
    head = "<th class='text'>model</th><th class='text'>sd estimate</th><th>nominal</th>" + "".join(
        f"<th>{escape(title)}</th>" for _, title, _ in columns
    )
    body = []
    for r in rows:
        cells = []
        for metric, _, better in columns:
            d = distance(r, metric, better)
            bold = d is not None and best[metric] is not None and d == best[metric]
            cells.append(
                f"<td class='{'best' if bold else ''}'>"
                f"{_mean_sd(r.get(key(metric)), r.get(f'test_calibrated_{metric}_sd'), True)}</td>"
            )
        body.append(
            f"<tr><td class='text model'>{_name(r['model'])}</td>"
            f"<td class='text'>{escape(str(r.get('test_calibrated_estimate') or '–'))}</td>"
            f"<td>{_num(r.get('test_calibrated_coverage'), 2)}</td>" + "".join(cells) + "</tr>"
        )
    return (
        f'<h3 id="{escape(name)}-uncertainty">Uncertainty on the test split</h3>'
        "<p class='note'>Calibrated on the validation split only (the model's "
        "<code>uncertainty:</code> settings), scored on test; mean ± sd over seeds, best per "
        "column in bold (coverage: nearest the nominal). Regression: split-conformal interval "
        "normalized by the model's sd where it has one (abs.: absolute residuals), "
        "miscalibration area, ENCE, Gaussian NLL after variance scaling, Spearman between sd and "
        "absolute error; classification: ECE before (raw) and after calibration, Brier, NLL, "
        "conformal prediction set size and coverage.</p>"
        f"<table class='uncertainty' id='uncertainty-{escape(name)}'>"
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    )


def _registry_note(record: Mapping[str, Any] | None) -> str:
    """Which model the dataset's registry entry holds, and how to load it."""
    if not record:
        return ""
    chosen = record.get("chosen_on") or {}
    seeds = ", ".join(str(s) for s in record.get("seeds", []))
    where = (
        f"registered as <code>{escape(record['registered_name'])}</code> in the MLflow model "
        f'registry: <code>mlflow.pyfunc.load_model("models:/'
        f'{escape(record["registered_name"])}/latest")</code>'
        if record.get("registered")
        else "not registered (tracking is off)"
    )
    return (
        f"<p class='note registry'>Best model on validation {escape(str(chosen.get('metric')))}"
        f" ({_num(chosen.get('value'))}): <b>{escape(record['model'])}</b>, seeds {seeds} as "
        f"one ensemble, saved as an MLflow pyfunc model in "
        f"<code>{escape(record['model_dir'])}</code> and {where}.</p>"
    )


def _per_task_details(report: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]) -> str:
    """Multitask datasets: each task's primary metric per model (the leaderboard's is the mean)."""
    records = report.get("per_task") or []
    if not records:
        return ""
    info = report["ranking"]
    metric, split = info["primary_metric"], info["rank_split"]
    other = "val" if split == "test" else "test"
    values = {(r["model"], r["task"], r["split"]): r for r in records if r["metric"] == metric}
    tasks = list(dict.fromkeys(r["task"] for r in records))
    models = [r["model"] for r in rows][:PER_TASK_MODELS]  # one column each: keep it to a width
    more = len(rows) - len(models)
    head = "<th class='text'>task</th>" + "".join(
        f"<th class='text'>{_name(m)}</th>" for m in models
    )

    def cell(model: str, task: str) -> str:
        main, side = values.get((model, task, split)), values.get((model, task, other))
        text = _mean_sd(main["mean"], main["sd"], stacked=True) if main else "–"
        if side:
            text += (
                f"<br><span class='split-other'>{escape(_split(other))} {_num(side['mean'])}</span>"
            )
        return f"<td>{text}</td>"

    body = "".join(
        f"<tr><td class='text'>{escape(t)}</td>" + "".join(cell(m, t) for m in models) + "</tr>"
        for t in tasks
    )
    return (
        f"<details class='per-task'><summary>Per task: {escape(metric)} of each of the "
        f"{len(tasks)} tasks ({escape(_split(split))}, mean ± sd over seeds; "
        f"{escape(_split(other))} below)</summary>"
        + (
            f"<p class='note'>The {len(models)} best models; the other {more} are in report.json "
            "(<code>per_task</code>).</p>"
            if more
            else ""
        )  # fmt: skip
        + f"<table class='per-task'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        "</details>"
    )


def _per_seed_details(report: Mapping[str, Any]) -> str:
    metrics = report["ranking"]["metrics"]
    table: dict[tuple[str, int, str], dict[str, Any]] = {}
    for r in report["per_seed"]:
        table.setdefault((r["model"], r["seed"], r["split"]), {})[r["metric"]] = r["value"]
    head = (
        "<th class='text'>model</th><th>seed</th><th class='text'>split</th>"
        + "".join(f"<th>{escape(m)}</th>" for m in metrics)
        + "<th class='text'>MLflow train run</th><th class='text'>MLflow evaluate run</th>"
    )
    body = []
    for (model, seed, split), values in sorted(table.items()):
        ids = report.get("run_ids", {}).get(model, {}).get(str(seed), {})
        body.append(
            f"<tr><td class='text'>{_name(model)}</td><td>{seed}</td>"
            f"<td class='text'>{escape(split)}</td>"
            + "".join(f"<td>{_num(values.get(m))}</td>" for m in metrics)
            + f"<td class='text'>{_short(ids.get('train'))}</td>"
            f"<td class='text'>{_short(ids.get('evaluate'))}</td></tr>"
        )
    return (
        "<details><summary>Every model × seed (validation and test)</summary>"
        f"<table class='per-seed'><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody>"
        "</table></details>"
    )


def _plots_section(name: str, report: Mapping[str, Any], plots: Mapping[str, Path], base: Path):
    parts = [f'<h3 id="{escape(name)}-plots">Plots (test split)</h3>']
    order = [r["model"] for r in report["leaderboard"] if r["shown"]]
    for model in order:
        folder = plots.get(model)
        if folder is None:
            continue
        manifest = json.loads((Path(folder) / "plots.json").read_text())
        family = manifest.get("family", "")
        parts.append(
            f"<h4 id='{escape(name)}-{escape(model)}'>{escape(model)} "
            f"<span class='muted'>({escape(family)})</span></h4><div class='plots'>"
        )
        for plot in manifest["plots"]:
            png, svg = Path(folder) / plot["png"], Path(folder) / plot["svg"]
            wide = " class='wide'" if plot.get("wide", plot["name"] == "learning_curve") else ""
            alt = f"{plot['title']} of {model} on {name}"
            parts.append(
                f"<figure{wide}>{_img(png, alt)}"
                f"<figcaption><b>{escape(plot['title'])}.</b> {escape(plot['caption'])} "
                f"<a href='{escape(_rel(svg, base))}'>SVG</a></figcaption></figure>"
            )
        parts.append("</div>")
        if manifest.get("structures"):
            parts.append(_structures(Path(folder) / manifest["structures"], report["task"]))
        study = (report.get("_studies") or {}).get(model)
        if study:  # a <name>__tuned model: its search (biomol_dl.search)
            parts.append(
                f"<div class='plots'><figure class='wide'>"
                f"{_img(Path(study), f'hyperparameter search of {model} on {name}')}"
                "<figcaption><b>Hyperparameter search.</b> Validation objective per trial "
                "(pruned trials at their last epoch; hollow: trials in storage no slot counts), "
                "the best so far, and fANOVA parameter importances.</figcaption></figure></div>"
            )
    return "".join(parts)


def _structures(path: Path, task: str) -> str:
    """The test molecules with the largest errors, drawn (inline RDKit SVG) with their values."""
    panel = json.loads(path.read_text())
    molecules = panel["molecules"]
    if not molecules:
        return ""
    predicted = {"binary": "P(1)", "multitask_binary": "P(1)"}.get(task, "predicted")
    cards = []
    for m in molecules:
        drawing = m["svg"] or f"<div class='muted'>{escape(m['smiles'])}</div>"
        task_name = f" · {escape(m['task'])}" if task == "multitask_binary" else ""
        true = escape(str(m["y_true"])) if task == "multiclass" else _num(m["y_true"])
        pred = escape(str(m["y_pred"])) if task == "multiclass" else _num(m["y_pred"])
        cards.append(
            f"<div class='molecule' title='{escape(m['smiles'])}'>{drawing}"
            f"<div class='id'>{escape(m['id'])}{task_name}</div><div class='values'>"
            f"<span>true <b>{true}</b></span><span>{predicted} <b>{pred}</b></span>"
            f"<span class='muted'>error {_num(m['error'])}</span></div></div>"
        )
    return (
        f"<h4>Largest errors <span class='muted'>({len(molecules)} test molecules, "
        f"{escape(panel['error'])}, {escape(panel['which'])})</span></h4>"
        f"<div class='structures'>{''.join(cards)}</div>"
    )


def _score_cells(row: Mapping[str, Any] | None, key: str, other: str) -> str:
    """The ranking split's score and, muted beside it, the other split's (test for validation)."""
    if row is None:
        return "<td>–</td><td>–</td>"
    main = _mean_sd(row.get(key + "_mean"), row.get(key + "_sd"))
    side = _mean_sd(row.get(other + "_mean"), row.get(other + "_sd"))
    return f"<td>{main}</td><td class='split-other'>{side}</td>"


def _overview(reports: Sequence[Mapping[str, Any]]) -> str:
    """One row per dataset: size, task, the best model and the best baseline."""
    rows = []
    for report in reports:
        info, board = report["ranking"], report["leaderboard"]
        key = f"{info['rank_split']}_{info['primary_metric']}"
        other = f"{'test' if info['rank_split'] == 'val' else 'val'}_{info['primary_metric']}"
        best = board[0] if board else {}
        baselines = [r for r in board if r["baseline"]]
        base = baselines[0] if baselines else None

        rows.append(
            f"<tr><td class='text'><a href='#{escape(report['dataset'])}'>"
            f"{escape(report['dataset'])}</a></td><td class='text'>{escape(str(report['task']))}"
            f"</td><td>{_num(report['data']['kept'])}</td><td class='text'>"
            f"{escape(_split(info['rank_split']))} {escape(info['primary_metric'])}</td>"
            f"<td class='text'>{escape(best.get('model', '–'))}</td>{_score_cells(best or None, key, other)}"
            f"<td class='text'>{escape(base['model']) if base else '–'}</td>{_score_cells(base, key, other)}</tr>"
        )
    splits = {r["ranking"]["rank_split"] for r in reports}
    side = "test score" if splits == {"val"} else "validation score" if splits == {"test"} else ""
    side = side or "other split's score"
    return (
        "<h3>Overview</h3><div class='scroll'><table class='overview'><thead><tr>"
        "<th class='text'>dataset</th><th class='text'>task</th><th>rows</th>"
        "<th class='text'>ranked by</th><th class='text'>best model</th><th>score</th>"
        f"<th class='split-other'>{side}</th><th class='text'>baseline</th>"
        f"<th>score</th><th class='split-other'>{side}</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def render(
    datasets: Sequence[tuple[Mapping[str, Any], Mapping[str, Path]]],
    *,
    base: Path,
    title: str = "biomol-dl evaluation report",
    links: Mapping[str, Path] | None = None,
    generated: str | None = None,
) -> str:
    """The HTML page. datasets: (report.json content, {model: plot folder}) per dataset, in
    display order, each report dict with "_folder" = the folder holding its leaderboard.png;
    base: the folder of index.html (for relative SVG links)."""
    generated = generated or dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    nav = "".join(
        f"<a href='#{escape(r['dataset'])}'>{escape(r['dataset'])}</a>" for r, _ in datasets
    )
    n_models = len({row["model"] for r, _ in datasets for row in r["leaderboard"]})
    sections = []
    for report, plots in datasets:
        name = report["dataset"]
        best = report["ranking"].get("best_model") or "n/a"
        d = report["data"]
        sections.append(
            f"<section class='dataset' id='{escape(name)}'><h2>{escape(name)}</h2>"
            f"<p class='muted'>{escape(str(d['kind']))} · {escape(str(d['task']))} · "
            f"{len(report['leaderboard'])} models · best by "
            f"{escape(_split(report['ranking']['rank_split']))} "
            f"{escape(report['ranking']['primary_metric'])}:"
            f" <b>{escape(best)}</b></p>"
            + _data_section(name, report)
            + _leaderboard_section(name, report, base)
            + _plots_section(name, report, plots, base)
            + "</section>"
        )
    overview = _overview([r for r, _ in datasets])
    link_html = " · ".join(
        f"<a href='{escape(_rel(Path(p), base))}'>{escape(label)}</a>"
        for label, p in (links or {}).items()
    )
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>"
        f"<header class='top'><h1>{escape(title)}</h1>"
        f"<p>{len(datasets)} dataset(s), {n_models} model(s) · generated {escape(generated)}</p>"
        "</header>"
        f"<nav>{nav}</nav><main>{overview}{''.join(sections)}</main>"
        f"<footer>Tables behind this page: {link_html or 'n/a'}. Per dataset, "
        "results/report/&lt;dataset&gt;/leaderboard.csv and per_seed.csv hold every number "
        "shown here. Made by biomol-dl.</footer></body></html>\n"
    )


def run_report(
    *,
    datasets: Mapping[str, Mapping[str, Any]],
    out_html: str | Path,
    links: Mapping[str, str | Path] | None = None,
    title: str = "biomol-dl evaluation report",
) -> Path:
    """The report rule: write index.html from every dataset's report.json and plot folders.

    datasets: {dataset: {"report": report.json path, "plots": {model: plot folder},
    "registry": registry.json path (optional), "studies": {tuned model: search plot}
    (optional)}}.
    links: label -> file linked from the footer (e.g. results/summary.csv).
    """
    out_html = Path(out_html)
    out_html.parent.mkdir(parents=True, exist_ok=True)
    loaded = []
    for name, spec in datasets.items():
        report = json.loads(Path(spec["report"]).read_text())
        report["_folder"] = str(Path(spec["report"]).parent)  # leaderboard.png lies beside it
        report["_studies"] = dict(spec.get("studies") or {})  # tuned models' search plots
        if spec.get("registry") and Path(spec["registry"]).is_file():
            report["_registry"] = json.loads(Path(spec["registry"]).read_text())
        if report.get("dataset") != name:
            raise ValueError(
                f"{spec['report']}: holds dataset {report.get('dataset')!r}, not {name!r}"
            )
        loaded.append((report, {m: Path(p) for m, p in spec["plots"].items()}))
    page = render(
        loaded,
        base=out_html.parent,
        title=title,
        links={k: Path(v) for k, v in (links or {}).items()},
    )
    out_html.write_text(page, encoding="utf-8")
    log.info("%s written (%.1f MB, %d datasets)", out_html, len(page) / 2**20, len(loaded))
    return out_html
