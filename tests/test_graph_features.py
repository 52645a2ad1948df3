"""The molecular graph featurizer: feature values on known molecules, agreement with plain RDKit
calls on benchmark molecules, the saved file format (its speed is a benchmark: BENCHMARKS.md)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
Chem = pytest.importorskip("rdkit.Chem")

from biomol_dl.features import build_featurizer, graph  # noqa: E402
from biomol_dl.features.graph import MolGraphFeaturizer  # noqa: E402

DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
TRICKY = [
    "c1ccccc1",
    "[NH4+]",
    "C[C@H](N)O",
    "C/C=C/C",
    "C/C=C\\C",
    "[13CH4]",
    "[2H]C([2H])([2H])O",
    "CC(=O)[O-].[Na+]",
    "[Cu+2].[O-]S(=O)(=O)[O-]",
    "C[N+](C)(C)C",
    "O=[N+]([O-])c1ccc(Cl)cc1",
    "C1CC2CCC1C2",
    "C#N",
    "[CH3]",
    "c1cc[nH]c1",
    "N->[Pt](<-N)(Cl)Cl",
    "[Se]=C=[Se]",
    "C[Hg]C",
    "F[B-](F)(F)F",
    "C=CC=O",
    "CC1=CC(=O)C=CC1=O",
    "O",
]


def names(f: MolGraphFeaturizer, kind: str = "atom") -> list[str]:
    return f._atom_names if kind == "atom" else f._bond_names


def column(f: MolGraphFeaturizer, name: str, kind: str = "atom") -> int:
    return names(f, kind).index(name)


def test_benzene_bonds_are_aromatic_conjugated_ring():
    f = MolGraphFeaturizer()
    g = f.featurize("c1ccccc1")
    assert g["x"].shape == (6, f.atom_dim)
    assert g["edge_index"].shape == (2, 12) and g["edge_attr"].shape == (12, f.bond_dim)
    for name in ("bond_type:aromatic", "conjugated", "in_ring", "stereo:none"):
        assert (g["edge_attr"][:, column(f, name, "bond")] == 1).all(), name
    assert g["edge_attr"][:, column(f, "bond_type:single", "bond")].sum() == 0
    for name in ("element:C", "aromatic", "in_ring", "hybridization:sp2", "total_h:1", "degree:3"):
        assert (g["x"][:, column(f, name)] == 1).all(), name
    # every bond appears as two directed edges, 2k and 2k + 1, reversed
    src, dst = g["edge_index"]
    assert (src[0::2] == dst[1::2]).all() and (dst[0::2] == src[1::2]).all()
    # each atom's one-hot groups sum to one: exactly one slot per categorical group
    one_hot = [n for n in names(f) if n.startswith("element:")]
    assert g["x"][:, [column(f, n) for n in one_hot]].sum(axis=1).tolist() == [1.0] * 6


def test_ammonium_charge_and_hydrogens():
    f = MolGraphFeaturizer()
    x = f.featurize("[NH4+]")["x"]
    assert x.shape[0] == 1
    for name in ("element:N", "formal_charge:1", "total_h:4", "degree:4", "hybridization:sp3"):
        assert x[0, column(f, name)] == 1, name
    assert x[0, column(f, "formal_charge:0")] == 0


def test_stereocentre_chirality_tags():
    f = MolGraphFeaturizer()
    cw = f.featurize("C[C@@H](N)O")["x"][:, column(f, "chirality:cw")]
    ccw = f.featurize("C[C@H](N)O")["x"][:, column(f, "chirality:ccw")]
    assert cw.tolist() == [0, 1, 0, 0] and ccw.tolist() == [0, 1, 0, 0]
    flat = f.featurize("CC(N)O")["x"][:, column(f, "chirality:none")]
    assert flat.tolist() == [1, 1, 1, 1]


def test_double_bond_stereo_and_isotope_mass():
    f = MolGraphFeaturizer()
    trans = f.featurize("C/C=C/C")["edge_attr"]
    cis = f.featurize("C/C=C\\C")["edge_attr"]
    double = trans[:, column(f, "bond_type:double", "bond")] == 1
    assert trans[double][:, column(f, "stereo:e", "bond")].tolist() == [1, 1]
    assert cis[double][:, column(f, "stereo:z", "bond")].tolist() == [1, 1]
    mass = f.featurize("[13CH4]")["x"][0, column(f, "mass")]
    assert mass == pytest.approx(13.00335 / 100, abs=1e-5)
    assert f.featurize("C")["x"][0, column(f, "mass")] == pytest.approx(12.011 / 100, abs=1e-5)


def components(n_atoms: int, edge_index: np.ndarray) -> int:
    parent = list(range(n_atoms))

    def root(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    for a, b in edge_index.T:
        parent[root(a)] = root(b)
    return len({root(i) for i in range(n_atoms)})


def test_salt_largest_fragment_is_one_component():
    salt = "CC(=O)[O-].[Na+]"
    whole = MolGraphFeaturizer().featurize(salt)
    assert components(len(whole["x"]), whole["edge_index"]) == 2
    stripped = MolGraphFeaturizer(largest_fragment=True).featurize(salt)
    assert len(stripped["x"]) == 4
    assert components(4, stripped["edge_index"]) == 1


def test_unparsable_or_empty_smiles_raises_naming_the_row():
    f = MolGraphFeaturizer()
    with pytest.raises(ValueError, match=r"input 2 .*'C1CC'"):
        f.featurize_table(["CCO", "c1ccccc1", "C1CC"])
    with pytest.raises(ValueError, match="no atoms"):
        f.featurize_table(["CCO", ""])


def test_bad_settings_fail_with_the_valid_names():
    with pytest.raises(ValueError, match="valid: element"):
        MolGraphFeaturizer(atom_features=["element", "colour"])
    with pytest.raises(ValueError, match="unknown element"):
        MolGraphFeaturizer(elements=["C", "Qq"])
    with pytest.raises(ValueError, match="descriptor"):
        MolGraphFeaturizer(add_descriptors=True, descriptor_names=["MolWt", "NoSuchThing"])


def reference_graph(smiles: str, f: MolGraphFeaturizer) -> tuple[np.ndarray, np.ndarray]:
    """The features from one plain RDKit call per atom / bond property: the slow obvious way."""
    mol = Chem.MolFromSmiles(smiles)

    def one_hot(value, choices):
        out = [0.0] * (len(choices) + 1)
        out[choices.index(value) if value in choices else len(choices)] = 1.0
        return out

    elements = list(f.elements)
    hyb = {Chem.HybridizationType.S: 0, Chem.HybridizationType.SP: 1,
           Chem.HybridizationType.SP2: 2, Chem.HybridizationType.SP3: 3,
           Chem.HybridizationType.SP3D: 4, Chem.HybridizationType.SP3D2: 5}  # fmt: skip
    chiral = [Chem.ChiralType.CHI_UNSPECIFIED, Chem.ChiralType.CHI_TETRAHEDRAL_CW,
              Chem.ChiralType.CHI_TETRAHEDRAL_CCW]  # fmt: skip
    rows = []
    for atom in mol.GetAtoms():
        rows.append(
            one_hot(atom.GetSymbol(), elements)
            + one_hot(atom.GetTotalDegree(), list(graph.DEGREES))
            + one_hot(atom.GetFormalCharge(), list(graph.FORMAL_CHARGES))
            + one_hot(hyb.get(atom.GetHybridization(), -1), list(range(6)))
            + [float(atom.GetIsAromatic())]
            + one_hot(atom.GetTotalNumHs(), list(graph.TOTAL_HS))
            + [float(atom.IsInRing())]
            + one_hot(atom.GetChiralTag(), chiral)
            + [atom.GetMass() / 100]
        )
    btypes = [Chem.BondType.SINGLE, Chem.BondType.DOUBLE, Chem.BondType.TRIPLE,
              Chem.BondType.AROMATIC]  # fmt: skip
    S = Chem.BondStereo
    stereo = [S.STEREONONE, S.STEREOANY, S.STEREOZ, S.STEREOE, S.STEREOCIS, S.STEREOTRANS]
    bonds = []
    for bond in mol.GetBonds():
        row = (one_hot(bond.GetBondType(), btypes) + [float(bond.GetIsConjugated())]
               + [float(bond.IsInRing())] + one_hot(bond.GetStereo(), stereo))  # fmt: skip
        bonds += [row, row]
    return np.array(rows, dtype=np.float32), np.array(bonds, dtype=np.float32).reshape(-1, 14)


def benchmark_smiles(per_dataset: int = 150) -> list[str]:
    smiles = list(TRICKY)
    for path in ["esol/delaney-processed.csv", "lipophilicity/lipo.csv", "freesolv/freesolv.csv",
                 "bbbp/bbbp.csv", "tox21/tox21.csv"]:  # fmt: skip
        if (DATASETS / path).exists():
            import pandas as pd

            column_values = pd.read_csv(DATASETS / path)["smiles"].astype(str).str.strip()
            parsed = [s for s in column_values if Chem.MolFromSmiles(s) is not None]
            # stereo, charges and isotopes first, so the slow paths are covered too
            parsed.sort(key=lambda s: -sum(c in s for c in "@/\\+-[<"))
            smiles += parsed[: per_dataset // 2] + parsed[-per_dataset // 2 :]
    return smiles


def test_values_match_plain_rdkit_calls_with_and_without_fast_paths(monkeypatch):
    f = MolGraphFeaturizer()
    smiles = benchmark_smiles()
    fast = f.featurize_table(smiles)
    monkeypatch.setattr(graph, "FAST_PATHS", False)
    slow = f.featurize_table(smiles)
    for key in ("x", "edge_index", "edge_attr", "atom_ptr", "edge_ptr"):
        assert torch.equal(fast[key], slow[key]), key
    for i, smi in enumerate(smiles):
        x, e = reference_graph(smi, f)
        a0, a1 = fast["atom_ptr"][i : i + 2].tolist()
        e0, e1 = fast["edge_ptr"][i : i + 2].tolist()
        np.testing.assert_allclose(fast["x"][a0:a1].numpy(), x, atol=1e-5, err_msg=smi)
        np.testing.assert_array_equal(fast["edge_attr"][e0:e1].numpy(), e, err_msg=smi)


def test_table_round_trips_through_torch_save(tmp_path):
    f = build_featurizer({"type": "graph", "add_descriptors": True,
                          "descriptor_names": ["MolWt", "TPSA", "Ipc"]})  # fmt: skip
    smiles = ["CCO", "c1ccccc1O", "[NH4+]", "CC(=O)Nc1ccc(O)cc1"]
    features = f.featurize_table(smiles)
    path = tmp_path / "graph.pt"
    torch.save(features, path)
    loaded = torch.load(path, weights_only=True)
    assert loaded["atom_ptr"].tolist() == [0, 3, 10, 11, 22]
    assert loaded["edge_ptr"][-1] == loaded["edge_index"].shape[1] == loaded["n_edges"]
    assert loaded["x"].shape == (22, f.atom_dim) and loaded["x"].dtype == torch.float32
    assert loaded["descriptors"].shape == (4, 3)
    assert loaded["descriptor_names"] == ["MolWt", "TPSA", "Ipc"]
    assert loaded["descriptors"][0, 0] == pytest.approx(46.069, abs=1e-2)
    # local atom indices: every edge of molecule i points inside molecule i
    for i in range(4):
        e0, e1 = loaded["edge_ptr"][i : i + 2].tolist()
        n = int(loaded["atom_ptr"][i + 1] - loaded["atom_ptr"][i])
        assert loaded["edge_index"][:, e0:e1].numpy().max(initial=0) < max(n, 1)


def test_worker_processes_give_the_same_arrays():
    smiles = benchmark_smiles(per_dataset=40)
    f = MolGraphFeaturizer(chunk_size=32)
    one, two = f.featurize_table(smiles, threads=1), f.featurize_table(smiles, threads=2)
    for key in ("x", "edge_index", "edge_attr", "atom_ptr", "edge_ptr"):
        assert torch.equal(one[key], two[key]), key


def test_descriptors_see_the_same_rings_as_rdkit():
    # Graph-only featurizing skips the symmetrized SSSR (ring membership is all it needs); the
    # descriptor path must not, since ring counts and ring classes come from the ring set.
    from rdkit.Chem import Descriptors

    names = ["RingCount", "NumAromaticRings", "NumAliphaticRings", "BertzCT"]
    cages = ["C1C2CC3CC1CC(C2)C3", "C12C3C4C1C5C2C3C45", "c1ccc2c(c1)ccc1ccccc12", "C1CC2CCC1CC2"]
    f = MolGraphFeaturizer(add_descriptors=True, descriptor_names=names)
    got = f.featurize_table(cages)["descriptors"].numpy()
    for row, smi in zip(got, cages, strict=True):
        mol = Chem.MolFromSmiles(smi)
        want = [getattr(Descriptors, name)(mol) for name in names]
        np.testing.assert_allclose(row, want, rtol=1e-5, err_msg=smi)
    plain = MolGraphFeaturizer().featurize_table(cages)
    assert torch.equal(plain["x"], f.featurize_table(cages)["x"])


def test_rdkit2d_and_graph_descriptors_are_one_table():
    # rdkit2d and the graph featurizer's descriptors share fingerprints.descriptor_table: the same
    # float32 values, NaN where RDKit fails or a value is beyond float32 (Ipc of a long chain).
    from rdkit.Chem import Descriptors

    names = ["MolWt", "Ipc", "TPSA", "BertzCT"]
    smiles = ["CCO", "c1ccccc1O", "C" * 60, "CC(=O)O[Pt](N)(N)Cl"]
    rdkit2d = build_featurizer({"type": "rdkit2d", "names": names}).featurize_table(smiles)
    descriptors = MolGraphFeaturizer(add_descriptors=True, descriptor_names=names)
    from_graph = descriptors.featurize_table(smiles)["descriptors"].numpy()
    X = rdkit2d["X"].numpy()
    assert X.dtype == np.float32 and rdkit2d["feature_names"] == names
    np.testing.assert_array_equal(X, from_graph)
    for row, smi in zip(X, smiles, strict=True):
        mol = Chem.MolFromSmiles(smi)
        with np.errstate(all="ignore"):
            want = np.array([getattr(Descriptors, n)(mol) for n in names]).astype(np.float32)
        want[~np.isfinite(want)] = np.nan
        np.testing.assert_array_equal(row, want, err_msg=smi)
    with pytest.raises(ValueError, match="unknown RDKit descriptor"):
        build_featurizer({"type": "rdkit2d", "names": ["NoSuchDescriptor"]}).featurize_table(smiles)
