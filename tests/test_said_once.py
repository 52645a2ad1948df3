"""Each of these is defined in one module of scripts/biomol_dl/ and imported everywhere else:
the residue alphabet (residues), the task names and the lower-is-better table (metrics), file
hashing (hashing), peak memory (runtime), token batching (batching)."""

from __future__ import annotations

import ast
from pathlib import Path

LIBRARY = Path(__file__).resolve().parents[1] / "scripts" / "biomol_dl"
SOURCES = {p.relative_to(LIBRARY).as_posix(): p.read_text() for p in LIBRARY.rglob("*.py")}


def _where(predicate) -> set[str]:
    return {name for name, text in SOURCES.items() if predicate(text)}


def _string_collections(text: str):
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Tuple | ast.List | ast.Set):
            values = {e.value for e in node.elts if isinstance(e, ast.Constant)}
            yield {v for v in values if isinstance(v, str)}


def _assigns(text: str, name: str) -> bool:
    for node in ast.walk(ast.parse(text)):
        targets = node.targets if isinstance(node, ast.Assign) else []
        targets += [node.target] if isinstance(node, ast.AnnAssign) else []
        if any(getattr(t, "id", None) == name for t in targets):
            return True
    return False


def test_the_residue_alphabet_is_written_once():
    assert _where(lambda t: "ACDEFGHIKLMNPQRSTVWY" in t) == {"residues.py"}


def test_the_task_names_are_listed_once():
    every = {"regression", "binary", "multiclass", "multitask_binary"}
    assert _where(lambda t: any(c >= every for c in _string_collections(t))) == {"metrics.py"}


def test_the_lower_is_better_table_is_defined_once():
    assert _where(lambda t: _assigns(t, "LOWER_IS_BETTER")) == {"metrics.py"}


def test_files_are_hashed_and_memory_measured_in_one_place():
    assert _where(lambda t: "hashlib.sha256()" in t) == {"hashing.py"}
    assert _where(lambda t: "ru_maxrss" in t and "getrusage" in t) == {"runtime.py"}


def test_token_batching_is_defined_once():
    for name in ("plan_batches", "collate_tokens", "token_loader", "pad_ids"):
        assert _where(lambda t, n=name: f"def {n}(" in t) == {"batching.py"}, name
