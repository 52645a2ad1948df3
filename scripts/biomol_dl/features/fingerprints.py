"""Fixed-length molecular vectors: Morgan (ECFP-like) fingerprints and RDKit 2D descriptors.

These feed the random-forest and MLP baselines that every deep model has to beat. Inputs are the
canonical SMILES of the clean table, so a parse failure here means validation was bypassed: it
raises instead of producing an all-zero row.
"""

from __future__ import annotations

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
        X = np.zeros((len(inputs), self.n_bits), dtype=np.float32)
        for i, smi in enumerate(inputs):
            mol = _mol(smi, i + 1)
            X[i] = (
                gen.GetCountFingerprintAsNumPy(mol)
                if self.counts
                else gen.GetFingerprintAsNumPy(mol)
            )
            if (i + 1) % 2000 == 0:
                log.info("featurized %d/%d molecules", i + 1, len(inputs))
        log.info(
            "featurized %d/%d molecules (Morgan r=%d, %d bits)",
            len(inputs),
            len(inputs),
            self.radius,
            self.n_bits,
        )
        return {
            "X": torch.from_numpy(X),
            "feature_names": [f"morgan_{j}" for j in range(self.n_bits)],
        }


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
        from rdkit.Chem import Descriptors

        names = self._names()
        funcs = dict(Descriptors._descList)
        unknown = [n for n in names if n not in funcs]
        if unknown:
            raise ValueError(f"unknown RDKit descriptor(s): {', '.join(unknown)}")
        X = np.zeros((len(inputs), len(names)), dtype=np.float32)
        with np.errstate(all="ignore"):
            for i, smi in enumerate(inputs):
                mol = _mol(smi, i + 1)
                for j, name in enumerate(names):
                    try:
                        X[i, j] = funcs[name](mol)
                    except Exception:  # a descriptor failing on one molecule is recorded as NaN
                        X[i, j] = np.nan
                if (i + 1) % 1000 == 0:
                    log.info("featurized %d/%d molecules", i + 1, len(inputs))
        X[~np.isfinite(X)] = np.nan
        log.info(
            "featurized %d molecules with %d RDKit descriptors; %d non-finite values",
            len(inputs),
            len(names),
            int(np.isnan(X).sum()),
        )
        return {"X": torch.from_numpy(X), "feature_names": names}
