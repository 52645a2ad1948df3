"""Split strategies: determinism, coverage, fractions and each strategy's own guarantee.

The guarantees are checked with code written here, not with the library's helpers: scaffolds come
straight from RDKit, k-mer similarities from Python sets (or scikit-learn's CountVectorizer on the
real data) and identities from a PairwiseAligner set up in this file.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from biomol_dl import splits
from biomol_dl.io import DataError
from biomol_dl.residues import STANDARD as STANDARD_RESIDUES

ROOT = Path(__file__).resolve().parents[1]
SHARED = (ROOT / ".." / "shared" / "datasets").resolve()

RINGS = [
    "c1ccccc1",
    "c1ccncc1",
    "c1ccc2ccccc2c1",
    "C1CCCCC1",
    "c1ccc2[nH]ccc2c1",
    "C1CCNCC1",
    "c1ccsc1",
    "c1ccoc1",
]
SUBSTITUENTS = ["C", "CC", "O", "N", "Cl", "OC(=O)"]
ACYCLIC = ["CCO", "CCCC", "CC(=O)O", "CCN"]
# 8 ring systems x 6 substituents + 4 acyclic molecules: 9 scaffold groups of 4 to 6 molecules.
SMILES = [f"{s}{r}" for r in RINGS for s in SUBSTITUENTS] + ACYCLIC

AMINO = STANDARD_RESIDUES


def clean_table(inputs, labels=None, **extra) -> pd.DataFrame:
    """A table shaped like validate's clean.csv: id, input, row, label (+ extra columns)."""
    n = len(inputs)
    table = pd.DataFrame({"id": [f"m{i:03d}" for i in range(n)], "input": list(inputs)})
    table["row"] = np.arange(1, n + 1)
    table["label"] = labels if labels is not None else np.linspace(0, 1, n)
    for name, values in extra.items():
        table[name] = values
    return table


def families(n_families: int, size: int, length: int, mutations: int, seed: int) -> list[str]:
    """Random protein families: a random ancestor and `size` point-mutated copies of it."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_families):
        base = rng.choice(list(AMINO), size=length)
        for _ in range(size):
            seq = base.copy()
            seq[rng.choice(length, size=mutations, replace=False)] = rng.choice(
                list(AMINO), mutations
            )
            out.append("".join(seq))
    return out


def split(table, spec, seed=0, *, kind="smiles", task="regression", labels=("label",)):
    return splits.make_split(table, spec, seed, kind=kind, task=task, label_columns=list(labels))


def rdkit_scaffold(smiles: str) -> str:
    from rdkit.Chem.Scaffolds import MurckoScaffold

    return MurckoScaffold.MurckoScaffoldSmiles(smiles=smiles, includeChirality=False)


def kmers(seq: str, k: int = 3) -> set[str]:
    return {seq[i : i + k] for i in range(len(seq) - k + 1)}


def containment(a: str, b: str, k: int = 3) -> float:
    ka, kb = kmers(a, k), kmers(b, k)
    return len(ka & kb) / min(len(ka), len(kb)) if ka and kb else 0.0


def cross_max(seqs, assignment, a, b, sim) -> float:
    ia = np.flatnonzero(assignment == a)
    ib = np.flatnonzero(assignment == b)
    return max(sim(seqs[i], seqs[j]) for i in ia for j in ib)


# ---------------------------------------------------------------------------------------------
# Every strategy: deterministic per seed, different across seeds, every row exactly once

PEPTIDES = families(12, 5, 30, 3, seed=1)  # 60 sequences
STRATEGY_CASES = {
    "random": (SMILES, {"strategy": "random"}, "smiles", "regression"),
    "scaffold": (SMILES, {"strategy": "scaffold"}, "smiles", "regression"),
    "stratified": (SMILES, {"strategy": "stratified"}, "smiles", "binary"),
    "homology": (PEPTIDES, {"strategy": "homology", "max_similarity": 0.5}, "protein", "binary"),
}


def case_table(name):
    inputs, spec, kind, task = STRATEGY_CASES[name]
    labels = np.arange(len(inputs)) % 2 if task == "binary" else None
    return clean_table(inputs, labels), spec, kind, task


@pytest.mark.parametrize("name", STRATEGY_CASES)
def test_same_seed_same_split_and_seeds_differ(name):
    table, spec, kind, task = case_table(name)
    first, info = split(table, spec, 3, kind=kind, task=task)
    again, _ = split(table, spec, 3, kind=kind, task=task)
    assert first.equals(again)
    others = {tuple(split(table, spec, s, kind=kind, task=task)[0]) for s in range(5)}
    assert len(others) > 1, "five seeds gave one split"
    assert info["seed_dependent"] is True


@pytest.mark.parametrize("name", STRATEGY_CASES)
def test_every_row_in_exactly_one_partition(name):
    table, spec, kind, task = case_table(name)
    table.index = table.index * 7 + 100  # labels, not positions, must line up
    assignment, info = split(table, spec, 0, kind=kind, task=task)
    assert assignment.index.equals(table.index)
    assert set(assignment) == {"train", "val", "test"}
    assert sum(info["sizes"].values()) == len(table) == info["n"]
    for p, n in info["sizes"].items():
        assert (assignment == p).sum() == n


def test_run_split_writes_ids_in_clean_order(tmp_path):
    table = clean_table(SMILES)
    # Real ids that pandas would turn into NaN or numbers by default.
    table.loc[:5, "id"] = ["NA", "nan", "None", "null", "1e3", "007"]
    table.to_csv(tmp_path / "clean.csv", index=False)
    out_csv, out_json = tmp_path / "split" / "seed0.csv", tmp_path / "split" / "seed0.json"
    info = splits.run_split(
        tmp_path / "clean.csv", {"strategy": "scaffold"}, 0, "smiles", "regression", ["label"],
        out_csv, out_json,
    )  # fmt: skip
    written = pd.read_csv(out_csv, dtype=str, keep_default_na=False)
    assert list(written.columns) == ["id", "split"]
    assert written["id"].tolist() == table["id"].tolist()
    assert json.loads(out_json.read_text()) == info
    assert info["sizes"] == written["split"].value_counts().to_dict()
    assert info["diagnostics"]["scaffolds_in_two_partitions"] == 0


@pytest.mark.parametrize("empty", ["", "  ", None])
def test_empty_id_is_an_error(empty):
    table = clean_table(SMILES)
    table["id"] = table["id"].astype(object)
    table.loc[2, "id"] = empty
    with pytest.raises(DataError, match="column 'id': empty id"):
        split(table, {"strategy": "random"})


@pytest.mark.parametrize("n", [10, 200, 1001])
def test_random_fractions(n):
    table = clean_table([f"C{'C' * i}" for i in range(n)])
    _, info = split(table, {"strategy": "random", "fractions": [0.7, 0.2, 0.1]})
    for p, f in zip(("train", "val", "test"), (0.7, 0.2, 0.1), strict=True):
        assert abs(info["sizes"][p] - f * n) <= 1


def test_smallest_tables():
    _, info = split(clean_table(["C", "CC", "CCC"]), {"strategy": "random"})
    assert info["sizes"] == {"train": 1, "val": 1, "test": 1}
    with pytest.raises(DataError, match="2 rows"):
        split(clean_table(["C", "CC"]), {"strategy": "random"})


# ---------------------------------------------------------------------------------------------
# Scaffold


def assert_no_shared_scaffold(smiles, assignment):
    owner: dict[str, str] = {}
    for smi, part in zip(smiles, assignment, strict=True):
        scaffold = rdkit_scaffold(smi)
        assert owner.setdefault(scaffold, part) == part, f"scaffold {scaffold!r} in two partitions"


@pytest.mark.parametrize("seed", range(4))
def test_scaffold_never_shared_between_partitions(seed):
    table = clean_table(SMILES)
    assignment, info = split(table, {"strategy": "scaffold"}, seed)
    assert_no_shared_scaffold(SMILES, assignment)
    acyclic = assignment[table["input"].isin(ACYCLIC)]
    assert acyclic.nunique() == 1  # the empty scaffold is one group
    assert info["diagnostics"]["acyclic_molecules"] == len(ACYCLIC)
    assert info["diagnostics"]["n_scaffolds"] == len(RINGS) + 1


def test_scaffold_unbalanced_is_largest_first_and_seed_independent():
    table = clean_table(SMILES)
    spec = {"strategy": "scaffold", "balanced": False}
    a, info = split(table, spec, 0)
    b, _ = split(table, spec, 1)
    assert a.equals(b) and info["seed_dependent"] is False
    assert_no_shared_scaffold(SMILES, a)


def test_scaffold_needs_two_groups_for_val_and_test():
    table = clean_table([f"{s}c1ccccc1" for s in ["C", "CC", "O", "N", "Cl", "F", "Br", "I"]])
    with pytest.raises(DataError, match="largest scaffold group holds 8 of 8"):
        split(table, {"strategy": "scaffold"})


def test_scaffold_bad_smiles_names_row_and_column():
    table = clean_table(SMILES[:9] + ["C1CC"])
    with pytest.raises(DataError, match=r"row 10 \(id 'm009'\), column 'input'"):
        split(table, {"strategy": "scaffold"})


@pytest.mark.skipif(not (SHARED / "bbbp" / "bbbp.csv").exists(), reason="no shared BBBP")
def test_scaffold_on_bbbp():
    raw = pd.read_csv(SHARED / "bbbp" / "bbbp.csv")
    table = clean_table(raw["smiles"].tolist(), raw["p_np"].to_numpy())
    assignment, info = split(table, {"strategy": "scaffold"}, 0, task="binary")
    assert_no_shared_scaffold(raw["smiles"], assignment)
    for p, f in (("train", 0.8), ("val", 0.1), ("test", 0.1)):
        assert abs(info["fractions"][p] - f) < 0.02


# ---------------------------------------------------------------------------------------------
# Stratified


def test_stratified_keeps_binary_proportions():
    n = 300
    labels = (np.arange(n) % 5 == 0).astype(int)  # 20 % positives
    assignment, info = split(
        clean_table([f"C{i}" for i in range(n)], labels), {"strategy": "stratified"}, 4,
        task="binary",
    )  # fmt: skip
    for p in ("train", "val", "test"):
        part = labels[(assignment == p).to_numpy()]
        assert abs(part.mean() - 0.2) <= 1 / len(part)
    assert info["diagnostics"]["class_counts"] == {"0": 240, "1": 60}


def test_stratified_multiclass_and_multitask():
    n = 240
    rng = np.random.default_rng(5)
    classes = rng.choice(3, size=n, p=[0.6, 0.3, 0.1])
    table = clean_table([f"C{i}" for i in range(n)], classes)
    assignment, _ = split(table, {"strategy": "stratified"}, 0, task="multiclass")
    for p in ("train", "val", "test"):
        part = classes[(assignment == p).to_numpy()]
        for c in range(3):
            assert abs((part == c).mean() - (classes == c).mean()) <= 1 / len(part)

    tasks = rng.choice([0.0, 1.0, np.nan], size=(n, 3), p=[0.7, 0.1, 0.2])
    table = clean_table([f"C{i}" for i in range(n)], tasks[:, 0], t2=tasks[:, 1], t3=tasks[:, 2])
    any_positive = (np.nan_to_num(tasks) == 1).any(axis=1)
    assignment, info = split(
        table, {"strategy": "stratified"}, 0, task="multitask_binary",
        labels=("label", "t2", "t3"),
    )  # fmt: skip
    assert info["diagnostics"]["stratum"] == "any"
    for p in ("train", "val", "test"):
        part = any_positive[(assignment == p).to_numpy()]
        assert abs(part.mean() - any_positive.mean()) <= 1 / len(part)


def test_stratified_refuses_regression_and_too_rare_classes():
    with pytest.raises(ValueError, match="stratified needs a classification task"):
        split(clean_table(SMILES), {"strategy": "stratified"}, task="regression")
    labels = np.zeros(len(SMILES), dtype=int)
    labels[0] = 1  # one positive cannot be in both test and the rest
    with pytest.raises(DataError, match="stratified split impossible"):
        split(clean_table(SMILES, labels), {"strategy": "stratified"}, task="binary")


# ---------------------------------------------------------------------------------------------
# Predefined


def flip_like(tmp_path) -> Path:
    """FLIP's layout: set = train/test, validation = True on part of train, empty elsewhere."""
    n = 40
    sets = ["train"] * 30 + ["test"] * 10
    validation = ["True" if i % 6 == 0 and i < 30 else "" for i in range(n)]
    table = clean_table(families(4, 10, 20, 2, seed=2), set=sets, validation=validation)
    path = tmp_path / "clean.csv"
    table.to_csv(path, index=False)
    return path


def test_predefined_column_is_read_as_written(tmp_path):
    """Fold codes such as "01" / "02" stay codes: read as numbers they would all be 1 and 2."""
    folds = ["01" if i % 4 else "02" for i in range(len(SMILES))]
    clean_table(SMILES, fold=folds).to_csv(tmp_path / "clean.csv", index=False)
    spec = {"strategy": "predefined", "column": "fold", "values": {"01": "train", "02": "test"}}
    out_csv = tmp_path / "seed0.csv"
    info = splits.run_split(
        tmp_path / "clean.csv", spec, 0, "smiles", "regression", ["label"], out_csv,
        tmp_path / "seed0.json",
    )  # fmt: skip
    assert info["sizes"]["test"] == folds.count("02")


def test_predefined_flip_columns_fix_the_split(tmp_path):
    path = flip_like(tmp_path)
    spec = {"strategy": "predefined", "column": "set", "val_column": "validation"}
    runs = [
        splits.run_split(
            path,
            spec,
            s,
            "protein",
            "regression",
            ["label"],
            tmp_path / f"s{s}.csv",
            tmp_path / f"s{s}.json",
        )  # fmt: skip
        for s in (0, 1)
    ]
    a, b = (pd.read_csv(tmp_path / f"s{s}.csv") for s in (0, 1))
    assert a.equals(b)
    raw = pd.read_csv(path, keep_default_na=False)
    expected = np.where(raw["validation"] == "True", "val", raw["set"])
    assert a["split"].tolist() == expected.tolist()
    assert runs[0]["seed_dependent"] is False
    assert "same split for every seed" in runs[0]["diagnostics"]["note"]


def test_predefined_val_fraction_draws_from_train_with_the_seed():
    n = 100
    parts = ["train"] * 80 + ["test"] * 20
    table = clean_table([f"C{i}" for i in range(n)], part=parts)
    spec = {"strategy": "predefined", "column": "part", "val_fraction": 0.25}
    a, info = split(table, spec, 0)
    b, _ = split(table, spec, 1)
    assert info["seed_dependent"] is True and info["sizes"] == {"train": 60, "val": 20, "test": 20}
    assert (a[table["part"] == "test"] == "test").all()
    assert not a.equals(b)


def test_predefined_values_mapping_and_errors():
    table = clean_table(
        [f"C{i}" for i in range(9)], fold=["a", "a", "a", "a", "b", "b", "c", "c", "a"]
    )
    spec = {
        "strategy": "predefined",
        "column": "fold",
        "values": {"a": "train", "b": "val", "c": "test"},
    }
    assignment, info = split(table, spec)
    assert assignment.tolist() == ["train"] * 4 + ["val"] * 2 + ["test"] * 2 + ["train"]
    assert info["diagnostics"]["val_source"] == "values"

    table.loc[5, "fold"] = "d"
    with pytest.raises(DataError, match=r"row 6 \(id 'm005'\), column 'fold': value 'd'"):
        split(table, spec)
    with pytest.raises(DataError, match="keep_columns"):
        split(table, {"strategy": "predefined", "column": "set"})
    with pytest.raises(ValueError, match="needs `column`"):
        split(table, {"strategy": "predefined"})


def test_predefined_validation_mark_on_a_test_row_is_an_error():
    table = clean_table(
        [f"C{i}" for i in range(6)],
        set=["train", "train", "train", "train", "test", "test"],
        validation=[True, False, None, None, True, None],
    )
    spec = {"strategy": "predefined", "column": "set", "val_column": "validation"}
    with pytest.raises(DataError, match=r"row 5 .*marked for validation"):
        split(table, spec)


@pytest.mark.skipif(not (SHARED / "flip_gb1" / "splits.zip").exists(), reason="no shared FLIP")
def test_predefined_on_flip_gb1():
    with zipfile.ZipFile(SHARED / "flip_gb1" / "splits.zip") as archive:
        raw = pd.read_csv(archive.open("splits/three_vs_rest.csv"))
    table = clean_table(
        raw["sequence"], raw["target"], set=raw["set"], validation=raw["validation"]
    )
    spec = {"strategy": "predefined", "column": "set", "val_column": "validation"}
    assignment, info = split(table, spec, 0, kind="protein")
    marked = raw["validation"].astype(str) == "True"
    assert info["sizes"]["val"] == marked.sum() > 0
    assert (assignment[raw["set"] == "test"] == "test").all()
    assert (assignment[marked] == "val").all()


# ---------------------------------------------------------------------------------------------
# Homology


@pytest.mark.parametrize("seed", range(3))
def test_homology_kmer_bound_holds(seed):
    threshold = 0.5
    seqs = families(15, 4, 25, 3, seed=seed) + families(10, 1, 40, 0, seed=seed + 10)
    table = clean_table(seqs)
    assignment, info = split(
        table, {"strategy": "homology", "max_similarity": threshold}, seed, kind="protein"
    )
    assignment = assignment.to_numpy()
    # Not vacuous: many pairs are above the threshold, so the clustering had work to do.
    linked = sum(containment(a, b) > threshold for i, a in enumerate(seqs) for b in seqs[i + 1 :])
    assert linked >= 15
    measured = {
        "test_train": cross_max(seqs, assignment, "test", "train", containment),
        "val_train": cross_max(seqs, assignment, "val", "train", containment),
        "test_val": cross_max(seqs, assignment, "test", "val", containment),
    }
    assert max(measured.values()) <= threshold
    assert info["diagnostics"]["max_similarity_between"] == pytest.approx(measured, abs=1e-4)


def test_homology_giant_cluster_fails_with_advice():
    seqs = families(1, 30, 40, 1, seed=3)  # one family: everything is linked
    with pytest.raises(DataError, match="raise max_similarity above 0.5"):
        split(clean_table(seqs), {"strategy": "homology"}, kind="protein")


def test_auto_k_and_threshold_follow_the_longest_sequence():
    assert [splits.auto_k(n) for n in (0, 40, 400, 401, 1367, 8000, 13100)] == [3, 3, 3, 4, 4, 4, 5]
    assert [splits.auto_max_similarity("kmer", k) for k in (3, 4, 5)] == [0.5, 0.397, 0.315]
    assert splits.auto_max_similarity("mmseqs", 5) == 0.5


def test_auto_mode_splits_full_length_proteins_where_k3_makes_one_cluster():
    # 24 proteins in 8 families plus one 9,000-residue protein: with k = 3 it holds 2/3 of all
    # 3-mers, so every protein is "similar" to it and all fall into one cluster.
    seqs = families(8, 3, 300, 30, seed=5)
    rng = np.random.default_rng(1)
    seqs.append("".join(rng.choice(list("ACDEFGHIKLMNPQRSTVWY"), size=9000)))
    table = clean_table(seqs)
    with pytest.raises(DataError, match=r"holds 25 of 25 rows .* or k above 3"):
        split(table, {"strategy": "homology", "k": 3, "max_similarity": 0.5}, kind="protein")
    assignment, info = split(table, {"strategy": "homology"}, 0, kind="protein")
    diagnostics = info["diagnostics"]
    assert (diagnostics["k"], diagnostics["max_similarity"]) == (5, 0.315)
    assert diagnostics["largest_cluster"] == 3  # the families, found at k = 5 too
    kmer5 = lambda a, b: containment(a, b, 5)  # noqa: E731
    assert cross_max(seqs, assignment.to_numpy(), "test", "train", kmer5) <= 0.315


def test_mmseqs_metric_needs_the_program(monkeypatch):
    import biomol_dl.mmseqs

    monkeypatch.delenv(biomol_dl.mmseqs.ENV, raising=False)
    monkeypatch.setattr(biomol_dl.mmseqs.shutil, "which", lambda _: None)
    spec = {"strategy": "homology", "metric": "mmseqs"}
    with pytest.raises(ValueError, match=r"metric mmseqs needs the MMseqs2 program.*apt-get"):
        split(clean_table(PEPTIDES), spec, kind="protein")


@pytest.mark.skipif(shutil.which("mmseqs") is None, reason="MMseqs2 not installed")
def test_mmseqs_metric_bound_holds_over_reported_pairs():
    seqs = families(8, 4, 60, 6, seed=2)
    assignment, info = split(
        clean_table(seqs), {"strategy": "homology", "metric": "mmseqs"}, 0, kind="protein"
    )
    diagnostics = info["diagnostics"]
    assert diagnostics["max_similarity"] == 0.5
    assert diagnostics["n_clusters"] == 8  # each family linked, no family split
    families_of = np.repeat(np.arange(8), 4)
    for f in range(8):
        assert len(set(assignment.to_numpy()[families_of == f])) == 1
    assert max(diagnostics["max_similarity_between"].values()) <= 0.5


def independent_identity(a: str, b: str) -> float:
    from Bio import Align
    from Bio.Align import substitution_matrices

    aligner = Align.PairwiseAligner(
        mode="global",
        substitution_matrix=substitution_matrices.load("BLOSUM62"),
        open_gap_score=-10,
        extend_gap_score=-0.5,
        open_end_gap_score=0,
        extend_end_gap_score=0,
    )
    aln = aligner.align(a, b)[0]
    identical = sum(x == y and x != "-" for x, y in zip(aln[0], aln[1], strict=True))
    return identical / min(len(a), len(b))


def test_pairwise_identity_definition():
    seq = "MKTAYIAKQRQISFVKSHFSRQ"
    assert splits.pairwise_identity(seq, seq) == 1.0
    assert splits.pairwise_identity(seq, seq[5:15]) == 1.0  # a fragment: free end gaps
    mutant = seq[:10] + "W" + seq[11:]
    assert splits.pairwise_identity(seq, mutant) == pytest.approx(21 / 22)


def test_homology_identity_metric_bound_holds():
    threshold = 0.6
    seqs = families(6, 3, 24, 4, seed=7)
    assignment, info = split(
        clean_table(seqs),
        {"strategy": "homology", "metric": "identity", "max_identity": threshold},
        1,
        kind="protein",
    )
    assignment = assignment.to_numpy()
    assert info["params"]["max_similarity"] == threshold
    measured = cross_max(seqs, assignment, "test", "train", independent_identity)
    assert measured <= threshold
    assert info["diagnostics"]["max_similarity_between"]["test_train"] == pytest.approx(
        measured, abs=1e-4
    )
    assert max(independent_identity(seqs[0], s) for s in seqs[1:3]) > threshold


ESOL = SHARED / "esol_ecoli_proteins"


@pytest.mark.skipif(not (ESOL / "eSol_train.csv").exists(), reason="no shared eSol")
def test_homology_on_esol_proteins():
    from sklearn.feature_extraction.text import CountVectorizer

    raw = pd.concat([pd.read_csv(ESOL / "eSol_train.csv"), pd.read_csv(ESOL / "eSol_test.csv")])
    seqs = raw["sequence"].str.strip().tolist()
    assignment, info = split(clean_table(seqs), {"strategy": "homology"}, 0, kind="protein")
    # auto: the longest eSol protein has 1,367 residues, so k = 4 and 0.5^(4/3)
    k, threshold = info["diagnostics"]["k"], info["diagnostics"]["max_similarity"]
    assert (k, threshold, info["diagnostics"]["auto"]) == (4, 0.397, ["k", "max_similarity"])
    vec = CountVectorizer(analyzer="char", ngram_range=(k, k), lowercase=False, binary=True)
    x = vec.fit_transform(seqs).astype(np.float64)
    size = np.asarray(x.sum(axis=1)).ravel()
    test = np.flatnonzero(assignment == "test")
    train = np.flatnonzero(assignment == "train")
    shared = (x[test] @ x[train].T).toarray()
    sim = shared / np.minimum(size[test, None], size[None, train])
    assert sim.max() <= threshold
    assert info["diagnostics"]["max_similarity_between"]["test_train"] == pytest.approx(
        sim.max(), abs=1e-4
    )
    assert abs(info["fractions"]["test"] - 0.1) < 0.01


# ---------------------------------------------------------------------------------------------
# Spec errors and the rule script


@pytest.mark.parametrize(
    ("spec", "kind", "message"),
    [
        ({"strategy": "random", "fractions": [0.8, 0.1, 0.2]}, "smiles", "sum to 1.1, not 1"),
        ({"strategy": "random", "fractions": [0.9, 0.1, 0]}, "smiles", r"in \(0, 1\)"),
        ({"strategy": "kfold"}, "smiles", "unknown strategy 'kfold'; valid: random, scaffold"),
        ({"strategy": "scaffold", "chirality": True}, "smiles", "unknown option.*chirality"),
        ({"strategy": "scaffold"}, "protein", "needs smiles inputs"),
        ({"strategy": "homology"}, "smiles", "needs protein inputs"),
        ({"strategy": "homology", "max_similarity": 1.5}, "protein", "max_similarity must be"),
        ({"strategy": "homology", "metric": "blast"}, "protein", "metric must be"),
    ],
)
def test_bad_specs_fail_with_one_line(spec, kind, message):
    with pytest.raises(ValueError, match=message) as caught:
        split(clean_table(SMILES), spec, kind=kind)
    assert "\n" not in str(caught.value)
    assert str(caught.value).startswith("invalid split spec: ")


def test_identity_metric_refuses_large_sets(monkeypatch):
    monkeypatch.setattr(splits, "IDENTITY_MAX_SECONDS", 0.001)
    spec = {"strategy": "homology", "metric": "identity"}
    with pytest.raises(ValueError, match="use metric kmer"):
        split(clean_table(PEPTIDES), spec, kind="protein")


def test_missing_class_label_names_row_and_column(tmp_path):
    labels = (np.arange(len(SMILES)) % 2).astype(float)
    labels[7] = np.nan
    clean_table(SMILES, labels).to_csv(tmp_path / "clean.csv", index=False)
    with pytest.raises(DataError, match=r"clean.csv: row 8 \(id 'm007'\), column 'label'"):
        splits.run_split(
            tmp_path / "clean.csv", {"strategy": "stratified"}, 0, "smiles", "binary", ["label"],
            tmp_path / "s.csv", tmp_path / "s.json",
        )  # fmt: skip
    assert not (tmp_path / "s.csv").exists()


def test_duplicate_ids_are_an_error():
    table = clean_table(SMILES)
    table.loc[3, "id"] = table.loc[2, "id"]
    with pytest.raises(DataError, match=r"row 4 \(id 'm002'\), column 'id'"):
        split(table, {"strategy": "random"})


DRIVER = """
import runpy, sys
from types import SimpleNamespace as NS
from snakemake.iocontainers import Namedlist as NL
d = sys.argv[1]
snakemake = NS(
    input=NL(fromdict={"clean": d + "/clean.csv"}),
    output=NL(fromdict={"split": d + "/seed0.csv", "info": d + "/seed0.json"}),
    params=NL(fromdict={"split": {"strategy": sys.argv[2]}, "kind": "smiles",
                        "task": "regression", "label_columns": ["label"]}),
    wildcards=NL(fromdict={"dataset": "tiny", "seed": "0"}),
    log=NL([d + "/split.log"]),
    rule="split", threads=1, resources=NL(), config={},
)
runpy.run_path(sys.argv[3], init_globals={"snakemake": snakemake}, run_name="__main__")
"""


def run_script(tmp_path, strategy):
    clean_table(SMILES).to_csv(tmp_path / "clean.csv", index=False)
    env = {**os.environ, "BIOMOL_DL_TRACKING": "0", "PYTHONPATH": str(ROOT / "scripts")}
    return subprocess.run(
        [sys.executable, "-c", DRIVER, str(tmp_path), strategy, str(ROOT / "scripts" / "split.py")],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
    )  # fmt: skip


def test_rule_script_writes_outputs_or_one_error_line(tmp_path):
    ok = run_script(tmp_path, "scaffold")
    assert ok.returncode == 0, ok.stderr
    assert pd.read_csv(tmp_path / "seed0.csv")["id"].tolist() == clean_table(SMILES)["id"].tolist()
    assert json.loads((tmp_path / "seed0.json").read_text())["strategy"] == "scaffold"

    bad = run_script(tmp_path, "kfold")
    assert bad.returncode == 1
    assert "biomol-dl: invalid split spec: unknown strategy 'kfold'" in bad.stderr
    assert "Traceback" not in bad.stderr
    assert "unknown strategy" in (tmp_path / "split.log").read_text()
