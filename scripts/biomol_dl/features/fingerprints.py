"""Fixed-length molecular vectors: Morgan (ECFP-like) fingerprints and RDKit 2D descriptors.

These feed the random-forest and MLP baselines that every deep model has to beat. Inputs are the
canonical SMILES of the clean table, so a parse failure here means validation was bypassed: it
raises instead of producing an all-zero row.

Morgan bits are cached packed, eight bits to a byte (`X_bits`, uint8 [N, ceil(n_bits / 8)], with
`n_bits`): 2,048 bits take 256 bytes, not 8 KiB of float32. Count fingerprints are cached dense in
the smallest integer type that holds them (`X`, usually uint8). Readers go through `n_features`
and `dense_rows` (numpy) or `unpack_bits` (torch), which unpack only the rows they are given, so
a model sees float32 0/1 values exactly as from a dense cache.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from biomol_dl.logutil import get

log = get(__name__)


def _mol(smiles: str, index: int):
    from rdkit import Chem

    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise ValueError(
            f"row {index}: RDKit cannot parse {smiles!r}; the clean table must be valid"
        )
    return mol


class MorganFeaturizer:
    """Morgan fingerprint bits (or counts) of a given radius, folded to `n_bits`."""

    def __init__(
        self, radius: int = 2, n_bits: int = 2048, counts: bool = False, chirality: bool = False
    ):
        self.radius, self.n_bits, self.counts, self.chirality = radius, n_bits, counts, chirality

    def __len__(self) -> int:
        return self.n_bits

    def __call__(self, smiles: str, index: int = 0) -> np.ndarray:
        from rdkit.Chem import rdFingerprintGenerator

        gen = rdFingerprintGenerator.GetMorganGenerator(
            radius=self.radius, fpSize=self.n_bits, includeChirality=self.chirality
        )
        mol = _mol(smiles, index)
        fp = gen.GetCountFingerprintAsNumPy(mol) if self.counts else gen.GetFingerprintAsNumPy(mol)
        return fp.astype(np.float32)

    def featurize_table(self, inputs: list[str], threads: int = 1) -> dict:
        import torch
        from rdkit.Chem import rdFingerprintGenerator

        gen = rdFingerprintGenerator.GetMorganGenerator(
            radius=self.radius, fpSize=self.n_bits, includeChirality=self.chirality
        )
        n = len(inputs)
        if self.counts:
            X = np.zeros((n, self.n_bits), dtype=np.uint8)
        else:
            X = np.zeros((n, (self.n_bits + 7) // 8), dtype=np.uint8)
        for i, smi in enumerate(inputs):
            mol = _mol(smi, i + 1)
            if self.counts:
                row = gen.GetCountFingerprintAsNumPy(mol)
                if row.max(initial=0) > np.iinfo(X.dtype).max:
                    X = X.astype(np.int32)  # rare: a count above 255
                X[i] = row
            else:
                X[i] = np.packbits(gen.GetFingerprintAsNumPy(mol))
            if (i + 1) % 2000 == 0:
                log.info("featurized %d/%d molecules", i + 1, n)
        log.info(
            "featurized %d/%d molecules (Morgan r=%d, %d bits, %s cache of %.1f MB)",
            n, n, self.radius, self.n_bits, "count" if self.counts else "packed-bit",
            X.nbytes / 1e6,
        )  # fmt: skip
        out = {"feature_names": [f"morgan_{j}" for j in range(self.n_bits)]}
        if self.counts:
            out["X"] = torch.from_numpy(X)
        else:
            out[BITS_KEY], out["n_bits"] = torch.from_numpy(X), self.n_bits
        return out


# ----------------------------------------------------------------------------- reading caches

BITS_KEY = "X_bits"  # packed bit rows; features["n_bits"] is the unpacked width


def n_features(features: Mapping[str, Any]) -> int:
    """The width of one example's flat feature vector, packed or dense cache."""
    import math

    if BITS_KEY in features:
        return int(features["n_bits"])
    return math.prod(features["X"].shape[1:])


def n_rows(features: Mapping[str, Any]) -> int:
    return int((features[BITS_KEY] if BITS_KEY in features else features["X"]).shape[0])


def dense_rows(features: Mapping[str, Any], rows: Any = None) -> np.ndarray:
    """float32 [n, D] of the given rows (index array or slice; all rows when None), unpacked
    from a bit cache or flattened and cast from a dense one."""
    key = BITS_KEY if BITS_KEY in features else "X"
    data = features[key]
    data = data.numpy() if hasattr(data, "numpy") else np.asarray(data)
    part = data if rows is None else data[rows]
    if key == BITS_KEY:
        bits = np.unpackbits(part, axis=1, count=int(features["n_bits"]))
        return bits.astype(np.float32)
    return part.reshape(len(part), -1).astype(np.float32, copy=False)


def unpack_bits(packed: Any, n_bits: int) -> Any:
    """torch float32 [B, n_bits] from packed uint8 rows [B, ceil(n_bits / 8)] (big-endian bit
    order, as np.packbits)."""
    import torch

    shifts = torch.arange(7, -1, -1, dtype=torch.uint8, device=packed.device)
    bits = (packed.unsqueeze(-1) >> shifts) & 1
    return bits.reshape(packed.shape[0], -1)[:, :n_bits].float()


class RDKit2DFeaturizer:
    """RDKit's 2D descriptors (`Descriptors.CalcMolDescriptors`), unscaled.

    Scales differ by orders of magnitude and a few descriptors can be NaN or infinite for exotic
    molecules; the models standardize on training rows and impute (see models/mlp.py).
    """

    def __init__(self, names: list[str] | None = None):
        self.names = names

    def _names(self) -> list[str]:
        from rdkit.Chem import Descriptors

        return self.names or [name for name, _ in Descriptors._descList]

    def __len__(self) -> int:
        return len(self._names())

    def featurize_table(self, inputs: list[str], threads: int = 1) -> dict:
        import torch

        names = descriptor_names(self.names)
        mols = (_mol(smi, i + 1) for i, smi in enumerate(inputs))
        values = descriptor_table(mols, names, len(inputs), progress_every=1000)
        with np.errstate(all="ignore"):
            X = values.astype(np.float32)  # beyond float32's range: inf, then NaN below
        X[~np.isfinite(X)] = np.nan
        log.info(
            "featurized %d molecules with %d RDKit descriptors; %d non-finite values",
            len(inputs),
            len(names),
            int(np.isnan(X).sum()),
        )
        return {"X": torch.from_numpy(X), "feature_names": names}


def descriptor_names(names: Sequence[str] | None, what: str = "") -> list[str]:
    """The RDKit descriptors to compute: `names`, checked, or every descriptor RDKit has."""
    from rdkit.Chem import Descriptors

    available = [name for name, _ in Descriptors._descList]
    if not names:
        return available
    known = set(available)
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(f"{what}unknown RDKit descriptor(s): {', '.join(unknown)}")
    return list(names)


def descriptor_table(
    mols: Iterable[Any], names: Sequence[str], n: int, progress_every: int = 0
) -> np.ndarray:
    """float64 [n, len(names)]: each RDKit descriptor of each of the n molecules, NaN where a
    descriptor raises on a molecule (other non-finite values are left to the caller)."""
    from rdkit.Chem import Descriptors

    functions = dict(Descriptors._descList)
    out = np.full((n, len(names)), np.nan, dtype=np.float64)
    with np.errstate(all="ignore"):
        for i, mol in enumerate(mols):
            for j, name in enumerate(names):
                try:
                    out[i, j] = functions[name](mol)
                except Exception:  # a descriptor undefined for one molecule is recorded as NaN
                    pass
            if progress_every and (i + 1) % progress_every == 0:
                log.info("featurized %d/%d molecules", i + 1, n)
    return out
