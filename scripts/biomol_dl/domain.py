"""Applicability domain: how similar an input is to the nearest molecule or sequence a model
was trained on, so a prediction can say when not to believe it.

SMILES: the largest Tanimoto similarity of the input's Morgan fingerprint (radius 2, 2,048 bits,
ECFP4-like) to the training molecules'. Sequences: the largest Jaccard similarity of the set of
its amino-acid k-mers (k = 3) to a training sequence's. `in_domain` is similarity >= THRESHOLD
(0.3 for both: below it, a nearest neighbour that shares under a third of its fingerprint bits or
3-mers is no longer a close analogue, and errors grow; the report's coverage plots show how much
on a scaffold split). Both are exact nearest-neighbour searches, in blocks of queries so memory
stays bounded.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

THRESHOLD = {"smiles": 0.3, "protein": 0.3}
RADIUS, N_BITS, K = 2, 2048, 3
_BLOCK = 2048


def _binary_matrix(rows: list[list[int]], n_cols: int):
    from scipy.sparse import csr_matrix

    indptr = np.cumsum([0] + [len(r) for r in rows])
    indices = np.fromiter((c for r in rows for c in r), dtype=np.int64, count=int(indptr[-1]))
    data = np.ones(len(indices), dtype=np.float32)
    return csr_matrix((data, indices, indptr), shape=(len(rows), n_cols))


def _nearest_jaccard(query, reference) -> np.ndarray:
    """Max over reference rows of |q & r| / |q | r| for binary sparse rows (0 for empty sets)."""
    if reference.shape[0] == 0:
        return np.zeros(query.shape[0])
    ref_t = reference.T.tocsc()
    ref_size = np.asarray(reference.sum(axis=1)).ravel()
    out = np.zeros(query.shape[0])
    for start in range(0, query.shape[0], _BLOCK):
        block = query[start : start + _BLOCK]
        inter = (block @ ref_t).toarray()
        size = np.asarray(block.sum(axis=1)).ravel()
        union = size[:, None] + ref_size[None, :] - inter
        with np.errstate(invalid="ignore", divide="ignore"):
            sim = np.where(union > 0, inter / union, 0.0)
        out[start : start + len(size)] = sim.max(axis=1)
    return out


def morgan_bits(smiles: Sequence[str]) -> list[list[int]]:
    from rdkit import Chem
    from rdkit.Chem import rdFingerprintGenerator

    gen = rdFingerprintGenerator.GetMorganGenerator(radius=RADIUS, fpSize=N_BITS)
    out = []
    for i, smi in enumerate(smiles):
        mol = Chem.MolFromSmiles(smi)
        if mol is None:
            raise ValueError(f"row {i}: RDKit cannot parse {smi!r}; inputs must be validated")
        out.append(list(gen.GetFingerprint(mol).GetOnBits()))
    return out


def kmer_ids(sequences: Sequence[str], vocabulary: dict[str, int]) -> list[list[int]]:
    """Column ids of each sequence's distinct k-mers (new k-mers are added to `vocabulary`)."""
    out = []
    for seq in sequences:
        kmers = {seq[i : i + K] for i in range(len(seq) - K + 1)}
        out.append(sorted(vocabulary.setdefault(kmer, len(vocabulary)) for kmer in kmers))
    return out


class Reference:
    """The training inputs, fingerprinted once; `similarity` of any number of query blocks."""

    def __init__(self, inputs: Sequence[str], kind: str):
        if kind not in THRESHOLD:
            raise ValueError(f"unknown input kind {kind!r}: smiles or protein")
        self.kind, self.threshold = kind, THRESHOLD[kind]
        self.vocabulary: dict[str, int] = {}
        if kind == "smiles":
            self.matrix = _binary_matrix(morgan_bits(inputs), N_BITS)
        else:
            rows = kmer_ids(inputs, self.vocabulary)
            self.matrix = _binary_matrix(rows, len(self.vocabulary))

    def similarity(self, queries: Sequence[str]) -> np.ndarray:
        """[len(queries)] similarity of each query to its nearest training input."""
        if self.kind == "smiles":
            return _nearest_jaccard(_binary_matrix(morgan_bits(queries), N_BITS), self.matrix)
        vocabulary = dict(self.vocabulary)  # k-mers unseen in training: columns of their own
        q = _binary_matrix(kmer_ids(queries, vocabulary), len(vocabulary))
        ref = self.matrix.copy()
        ref.resize((ref.shape[0], len(vocabulary)))  # zero columns for the unseen k-mers
        return _nearest_jaccard(q, ref)


def nearest_similarity(queries: Sequence[str], reference: Sequence[str], kind: str) -> np.ndarray:
    """[len(queries)] similarity of each query to its nearest reference (training) input."""
    return Reference(reference, kind).similarity(queries)
