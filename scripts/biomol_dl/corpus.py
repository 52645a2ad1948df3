"""The corpus rule: unlabelled molecules for pretraining, from one or more sources.

A corpus (config `corpora.<name>`, see biomol_dl.transfer) is read source by source (any source
type a dataset takes; biomol_dl.sources), each SMILES checked exactly as a smiles dataset's are
(biomol_dl.validate, with the corpus's `validation` options), then

1. deduplicated by canonical SMILES across all sources (the first occurrence is kept),
2. stripped of the molecules of the `exclude` datasets: a corpus molecule goes when its InChIKey
   (or, with exclude_match: connectivity, the InChIKey's first block) or its canonical SMILES is
   that of a molecule in an excluded dataset's clean table,
3. sampled down to `max_molecules` (seeded) when given.

Every row read ends in exactly one of molecules.csv (columns id, input, inchikey, source, row:
`input` is the canonical SMILES, so the featurize code reads it as it reads a clean table) or
rejects.csv (source, row, line, column, value, reason); summary.json counts both per source and
per reason, and kept + rejected = rows in.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from biomol_dl.io import DataError
from biomol_dl.logutil import get

log = get(__name__)

REJECT_COLUMNS = ["source", "row", "line", "column", "value", "reason"]
SAMPLE_SEED = 0


def _inchikey(Chem: Any, smiles: str) -> str:
    mol = Chem.MolFromSmiles(smiles)
    return Chem.MolToInchiKey(mol) if mol is not None else ""


def _match_key(inchikey: str, how: str) -> str:
    return inchikey.split("-")[0] if how == "connectivity" and inchikey else inchikey


def excluded_molecules(
    clean_tables: Mapping[str, str | Path], how: str = "inchikey"
) -> tuple[dict[str, str], dict[str, str]]:
    """({match key: dataset}, {canonical SMILES: dataset}) of the excluded datasets' molecules."""
    from rdkit import Chem, RDLogger

    from biomol_dl.io import read_table

    RDLogger.DisableLog("rdApp.*")
    by_key: dict[str, str] = {}
    by_smiles: dict[str, str] = {}
    for dataset, path in clean_tables.items():
        for smiles in read_table(path)["input"]:
            mol = Chem.MolFromSmiles(smiles)
            if mol is None:
                continue
            canonical = Chem.MolToSmiles(mol)
            by_smiles.setdefault(canonical, dataset)
            key = _match_key(Chem.MolToInchiKey(mol), how)
            if key:
                by_key.setdefault(key, dataset)
    return by_key, by_smiles


def exclusion_reason(
    Chem: Any, canonical: str, by_key: Mapping[str, str], by_smiles: Mapping[str, str], how: str
) -> tuple[str | None, str]:
    """(why the molecule `canonical` is excluded or None, its InChIKey when it is not), given
    the excluded datasets' molecules (excluded_molecules)."""
    if canonical in by_smiles:
        return f"excluded: in dataset {by_smiles[canonical]}", ""
    inchikey = _inchikey(Chem, canonical)
    dataset = by_key.get(_match_key(inchikey, how))
    if dataset is not None:
        return f"excluded: in dataset {dataset} (InChIKey {inchikey}, match {how})", ""
    return None, inchikey


def build_corpus(
    entry: Mapping[str, Any],
    out_molecules: str | Path,
    out_rejects: str | Path,
    out_summary: str | Path,
    *,
    exclude_tables: Mapping[str, str | Path] | None = None,
    mirror: Any = None,
    cache_dir: str | Path = "resources/downloads",
    diagnostics: tuple[str | Path, str | Path] | None = None,
) -> dict[str, Any]:
    """Read, check, deduplicate, exclude and sample a corpus; write its three files.

    entry: the corpus's config entry (sources, validation, exclude_match, max_molecules).
    exclude_tables: {dataset: its validate/clean.csv} for each dataset in `exclude`.
    diagnostics: (rejects, summary) copies kept in the rule's log folder (they survive a failure).
    Raises DataError (one line) when a source cannot be read or no molecule remains.
    """
    from biomol_dl import validate

    options = validate.validation_options(
        {"kind": "smiles", "task": "regression", "validation": entry.get("validation") or {}},
        "corpus",
    )
    how = entry.get("exclude_match") or "inchikey"
    corpus = _Corpus(options, how, *excluded_molecules(exclude_tables or {}, how))
    per_source = [
        corpus.add(item, *_read_source(item, mirror, cache_dir)) for item in entry["sources"]
    ]
    limit = entry.get("max_molecules")
    corpus.sample(limit)
    molecules = corpus.table()
    rejects = pd.DataFrame(corpus.rejects, columns=REJECT_COLUMNS).astype({"line": "Int64"})
    rows_in = sum(s["rows_in"] for s in per_source)
    summary = {
        "rows_in": rows_in,
        "kept": len(molecules),
        "rejected": len(rejects),
        "by_reason": dict(sorted(Counter(r.split(":", 1)[0] for r in rejects["reason"]).items())),
        "sources": per_source,
        "exclude": {
            "datasets": sorted(exclude_tables or {}),
            "match": how,
            "molecules": len(corpus.by_key),
        },  # fmt: skip
        "max_molecules": limit,
        "validation": options,
    }
    assert summary["kept"] + summary["rejected"] == rows_in, "the corpus lost rows"
    _write(molecules, rejects, summary, out_molecules, [(out_rejects, out_summary), diagnostics])
    if not len(molecules):
        kept_at = diagnostics or (out_rejects, out_summary)
        raise DataError(
            f"corpus: no molecule remains of {rows_in} rows ({summary['by_reason']}); every "
            f"reason is in {kept_at[0]}"
        )
    log.info("corpus: %d molecules kept of %d rows (%s) -> %s", len(molecules), rows_in,
             summary["by_reason"], out_molecules)  # fmt: skip
    return summary


class _Corpus:
    """The molecules kept so far (first occurrence of each canonical SMILES) and every reject."""

    def __init__(self, options: dict, how: str, by_key: dict, by_smiles: dict):
        self.options, self.how, self.by_key, self.by_smiles = options, how, by_key, by_smiles
        self.kept: list[dict[str, Any]] = []
        self.rejects: list[dict[str, Any]] = []
        self.first: dict[str, tuple[str, int]] = {}

    def add(self, item: Mapping[str, Any], label: str, table: pd.DataFrame) -> dict[str, Any]:
        """Check one source's rows; returns its counts for the summary."""
        from biomol_dl import validate

        column = item["input_column"]
        checker = validate._SmilesChecker(self.options, column)
        lines = table.attrs.get(validate.LINES_ATTR)
        counts: Counter[str] = Counter()
        with checker.quiet():
            for i, raw in enumerate(table[column].astype(str).tolist()):
                where = {"source": label, "row": i + 1, "line": lines[i] if lines else None}
                try:
                    _, canonical = checker(raw)
                except validate._Reject as err:
                    reject = {
                        **where,
                        "column": err.column,
                        "value": err.value,
                        "reason": err.reason,
                    }
                else:
                    reason, inchikey = self._why_not(canonical)
                    if reason is None:
                        self.first[canonical] = (label, i + 1)
                        self.kept.append({"input": canonical, "inchikey": inchikey, **where})
                        counts["kept"] += 1
                        continue
                    reject = {**where, "column": column, "value": raw, "reason": reason}
                self.rejects.append(reject)
                counts[reject["reason"].split(":", 1)[0]] += 1
        log.info("%s: %d rows, %s", label, len(table), dict(counts))
        return {"source": label, "input_column": column, "rows_in": len(table),
                **dict(sorted(counts.items()))}  # fmt: skip

    def _why_not(self, canonical: str) -> tuple[str | None, str]:
        """(reason the molecule is not kept or None, its InChIKey when kept)."""
        from rdkit import Chem

        if canonical in self.first:
            source, row = self.first[canonical]
            return f"duplicate: the same molecule as {source} row {row}", ""
        return exclusion_reason(Chem, canonical, self.by_key, self.by_smiles, self.how)

    def sample(self, limit: int | None) -> None:
        """Keep a seeded sample of `limit` molecules; the others become not_sampled rejects."""
        if not limit or len(self.kept) <= limit:
            return
        rng = np.random.default_rng(SAMPLE_SEED)
        chosen = set(rng.choice(len(self.kept), size=int(limit), replace=False).tolist())
        for j, mol in enumerate(self.kept):
            if j not in chosen:
                self.rejects.append({"source": mol["source"], "row": mol["row"],
                                     "line": mol["line"], "column": None, "value": mol["input"],
                                     "reason": f"not_sampled: max_molecules {limit}"})  # fmt: skip
        self.kept = [mol for j, mol in enumerate(self.kept) if j in chosen]

    def table(self) -> pd.DataFrame:
        """molecules.csv: id, input (canonical SMILES), inchikey, source, row."""
        return pd.DataFrame(
            {
                "id": [f"m{j + 1}" for j in range(len(self.kept))],
                **{k: [m[k] for m in self.kept] for k in ("input", "inchikey", "source", "row")},
            }
        )


def _write(molecules, rejects, summary, out_molecules, targets) -> None:
    """molecules.csv (when any), and rejects + summary to each (rejects, summary) pair given."""
    from biomol_dl.hashing import sha256_file

    if len(molecules):
        Path(out_molecules).parent.mkdir(parents=True, exist_ok=True)
        molecules.to_csv(out_molecules, index=False)
        summary["sha256"] = sha256_file(out_molecules)
    for rejects_path, summary_path in (t for t in targets if t):
        Path(rejects_path).parent.mkdir(parents=True, exist_ok=True)
        Path(summary_path).parent.mkdir(parents=True, exist_ok=True)
        rejects.to_csv(rejects_path, index=False)
        Path(summary_path).write_text(json.dumps(summary, indent=2, default=str) + "\n")


def _read_source(item: Mapping[str, Any], mirror: Any, cache_dir: str | Path):
    """(display label, table of strings) of one corpus source."""
    from biomol_dl import sources
    from biomol_dl.io import read_raw_table

    source = item["source"]
    label = sources.source_label(source)
    path = sources.resolve_source(source, mirror=mirror, cache_dir=cache_dir)
    fmt = sources.source_format(source)
    table = read_raw_table(
        path,
        fmt,
        required=[item["input_column"]],
        display_name=label,
        **sources.read_options(source),
    )
    return label, table
