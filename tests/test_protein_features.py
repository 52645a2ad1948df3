"""Protein featurizers: encodings, length policies (never silent), k-mers, bucketed batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from biomol_dl.batching import (
    TokenExamples,
    collate_tokens,
    pad_ids,
    padding_mask,
    plan_batches,
    token_loader,
)
from biomol_dl.features import build_featurizer
from biomol_dl.features.protein import (
    AminoAcidTokenFeaturizer,
    KmerFeaturizer,
    OneHotFeaturizer,
)
from biomol_dl.residues import STANDARD as AMINO_ACIDS

SEQS = ["MKTAYIAKQR", "GSHM", "EVQLVESGGGLVQPGGSLRL", "ACDEFGHIKLMNPQRSTVWYX"]


def test_aa_tokens_round_trip_and_padding_mask():
    f = AminoAcidTokenFeaturizer(max_length=100)
    for seq in SEQS + [AMINO_ACIDS]:
        ids = f.encode(seq)
        assert ids[0] == f.index["<cls>"] and f.decode(ids) == seq
    out = f.featurize_table(SEQS)
    assert out["tokens"].shape == (4, 22) and out["vocab_size"] == len(f) == 23
    assert out["lengths"].tolist() == [len(s) + 1 for s in SEQS]
    assert out["mask"].sum(1).tolist() == out["lengths"].tolist()
    assert (out["tokens"][~out["mask"]] == f.pad_index).all()
    assert f.decode(out["tokens"][1].tolist()) == "GSHM"
    assert f.decode(f.encode("MBZU")) == "MXXX"  # ambiguous codes become X, on purpose


def test_onehot_flat_matches_indices():
    f = build_featurizer({"type": "onehot", "max_length": 12})
    assert isinstance(f, OneHotFeaturizer) and len(f) == 21
    out = f.featurize_table(SEQS)
    assert out["X"].dtype == torch.uint8  # RF / MLP cast it; a quarter of float32's size
    assert out["X"].shape == (4, 12 * 21) == (4, len(out["feature_names"]))
    X = out["X"].reshape(4, 12, 21)
    assert X.sum(-1).tolist()[1] == [1] * 4 + [0] * 8  # GSHM: four residues, then padding
    assert out["feature_names"][int(X[0, 0].argmax())] == "pos1_M"
    assert out["feature_names"][21 * 3 + int(X[3, 3].argmax())] == "pos4_E"
    assert out["n_truncated"] == 2  # two sequences longer than 12
    # X is as wide as the longest sequence, not max_length; flat=false leaves it out
    assert f.featurize_table(["MKV", "GS"])["X"].shape == (2, 3 * 21)
    assert "X" not in OneHotFeaturizer(flat=False).featurize_table(SEQS)


@pytest.mark.parametrize(
    ("policy", "expected"),
    [("truncate", "MKTAYI"), ("crop_center", "TAYIAK")],
)
def test_length_policies_are_counted(policy, expected, caplog):
    f = OneHotFeaturizer(max_length=6, length_policy=policy)
    with caplog.at_level("WARNING", logger="biomol_dl"):
        out = f.featurize_table(SEQS)
    assert out["n_truncated"] == 3
    assert "3 of 4 sequences are longer than max_length=6" in caplog.text
    vocab = out["vocab"]
    assert "".join(vocab[i] for i in out["tokens"][0].tolist()) == expected
    assert out["lengths"].tolist() == [6, 4, 6, 6]


def test_reject_policy_and_bad_residue_fail_in_one_line():
    with pytest.raises(
        ValueError, match=r"sequence 1 of the clean table has 10 residues.*3 sequence"
    ):
        OneHotFeaturizer(max_length=6, length_policy="reject").featurize_table(SEQS)
    with pytest.raises(ValueError, match=r"sequence 2 of the clean table has '\*' at position 3"):
        OneHotFeaturizer().featurize_table(["MKV", "GS*M"])
    with pytest.raises(ValueError, match="unknown length_policy 'chop'"):
        OneHotFeaturizer(length_policy="chop")


def test_kmer_composition():
    f = KmerFeaturizer(k=[1, 2])
    assert len(f) == 20 + 400
    out = f.featurize_table(["AAC", "MXM"])
    names = out["feature_names"]
    X = out["X"]
    row = dict(zip(names, X[0].tolist(), strict=True))
    assert row["kmer_A"] == pytest.approx(2 / 3) and row["kmer_C"] == pytest.approx(1 / 3)
    assert row["kmer_AA"] == pytest.approx(0.5) and row["kmer_AC"] == pytest.approx(0.5)
    assert X[0].sum() == pytest.approx(2.0)
    # X is skipped: MXM has one countable 1-mer pair (M, M) of 3 and no countable 2-mer
    assert X[1, :20].sum() == pytest.approx(2 / 3) and X[1, 20:].sum() == 0
    assert out["n_nonstandard_residues"] == 1
    with pytest.raises(ValueError, match="k must be 1, 2, 3"):
        KmerFeaturizer(k=4)


def test_length_bucketed_batches_are_seeded_and_cover_every_row():
    lengths = np.random.default_rng(0).integers(5, 200, size=300)
    a = plan_batches(lengths, batch_size=16, shuffle=True, seed=3, bucket_batches=4)
    b = plan_batches(lengths, batch_size=16, shuffle=True, seed=3, bucket_batches=4)
    c = plan_batches(lengths, batch_size=16, shuffle=True, seed=4, bucket_batches=4)
    assert a == b and a != c
    assert sorted(i for batch in a for i in batch) == list(range(300))
    # bucketing cuts padding compared with random batches of the same size
    rng = np.random.default_rng(1)
    random_batches = np.array_split(rng.permutation(300), len(a))

    def padded(batches):
        return sum(len(bt) * max(lengths[i] for i in bt) for bt in batches)

    assert padded(a) < 0.8 * padded(random_batches)
    # evaluation keeps row order; max_tokens caps padded size
    capped = plan_batches(lengths, batch_size=64, max_tokens=600, shuffle=False)
    assert [i for batch in capped for i in batch] == list(range(300))
    assert all(len(bt) * max(lengths[i] for i in bt) <= 600 for bt in capped if len(bt) > 1)


def test_token_loader_pads_and_masks():
    out = AminoAcidTokenFeaturizer().featurize_table(SEQS)
    y = np.arange(4, dtype=np.float32)[:, None]
    data = TokenExamples(out["tokens"], out["lengths"], y)
    loader = token_loader(
        torch.utils.data.Subset(data, [1, 3]),
        ids_key="tokens",
        pad_id=0,
        batch_size=8,
        shuffle=False,
        seed=0,
        params={},
    )
    (batch,) = list(loader)
    assert batch["tokens"].shape == (2, 22) and batch["tokens"].dtype == torch.long
    assert batch["mask"].sum(1).tolist() == [5, 22]
    assert batch["y"].squeeze(1).tolist() == [1.0, 3.0]


def test_padding_matches_the_explicit_loop():
    rows = [[3, 1, 4], [1], [], [5, 9, 2, 6]]
    for dtype in (torch.uint8, torch.int16, torch.long):
        got = pad_ids(rows, 7, dtype)
        want = torch.full((4, 4), 7, dtype=dtype)
        for i, r in enumerate(rows):
            want[i, : len(r)] = torch.tensor(r, dtype=dtype)
        assert got.dtype == dtype and torch.equal(got, want)
    assert pad_ids([], 0, torch.uint8).shape == (0, 0)
    mask = padding_mask([3, 1, 0, 4], 4)
    assert mask.dtype == torch.bool and mask.sum(1).tolist() == [3, 1, 0, 4]
    examples = [{"ids": torch.tensor(r, dtype=torch.int16), "y": torch.zeros(1)} for r in rows]
    batch = collate_tokens(examples, "ids", 7)
    assert batch["ids"].dtype == torch.long and torch.equal(batch["ids"], pad_ids(rows, 7))
    assert torch.equal(batch["mask"], mask) and batch["y"].shape == (4, 1)


def test_no_import_cycle_between_featurizers_and_plm():
    import ast
    from pathlib import Path

    root = Path(__file__).parents[1] / "scripts" / "biomol_dl"

    def imports(path):
        tree = ast.parse(path.read_text())
        names = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
                names.update(f"{node.module}.{a.name}" for a in node.names)
        return names

    assert not any(n.startswith("biomol_dl.features") for n in imports(root / "plm.py"))
    batching = imports(root / "batching.py")
    assert not any(n.startswith(("biomol_dl.features", "biomol_dl.plm")) for n in batching)
