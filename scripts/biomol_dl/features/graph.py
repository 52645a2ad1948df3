"""Molecular graphs for the GNN family: atoms are nodes, bonds are pairs of directed edges.

For `models/gnn.py` (which turns the arrays back into torch_geometric `Data` objects) and for the
`featurize` rule, which saves what `featurize_table` returns. The file holds flat tensors only (no
pickled `Data` objects), so it loads with `torch.load(..., weights_only=True)`:

    x            float32 [total_atoms, atom_dim]   atom features, molecules one after another
    edge_index   int64   [2, total_edges]          per-molecule (local) atom indices; bond k of a
                                                   molecule gives edges 2k (begin->end) and 2k+1
                                                   (end->begin), so edge e's reverse is e ^ 1
    edge_attr    float32 [total_edges, bond_dim]   bond features, the same for both directions
    atom_ptr     int64   [N + 1]                   molecule i: x[atom_ptr[i] : atom_ptr[i + 1]]
    edge_ptr     int64   [N + 1]                   the same for edges
    descriptors  float32 [N, D]                    only with add_descriptors: raw RDKit 2D
                                                   descriptors, NaN where undefined; the model
                                                   standardizes them on the train rows
    atom_dim, bond_dim, n_atoms, n_edges, atom_feature_names, bond_feature_names, ...

Atom features: element one-hot over a fixed list + "other", total degree, formal charge,
hybridization, aromaticity, total hydrogens, ring membership, chirality tag, mass / 100. Bond
features: type, conjugation, ring membership, stereo. Every categorical feature has an "other"
slot, so an unexpected value is still visible to the model instead of an all-zero block.

Speed (target: at least half the rate of a bare `Chem.MolFromSmiles` loop, on one core): per
molecule we make one call per atom feature through `map` over the atom objects (no per-atom Python
dicts or lists); skip work whose answer is already known (stereo perception and chirality tags
without '@', '/' or '\\'; isotope masses without an isotope; conjugation without a multiple bond;
ring flags without a ring; atom degree, ring membership and aromaticity follow from the bonds);
collect plain integer codes for a chunk of molecules and build its one-hot matrices with a few
numpy index operations. `FAST_PATHS = False` turns the shortcuts off; the tests check that both
agree. `threads > 1` spreads the chunks over worker processes (fork, see `_map_chunks`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from biomol_dl.logutil import get

log = get(__name__)

DEFAULT_ELEMENTS = (
    "H", "B", "C", "N", "O", "F", "Na", "Mg", "Si", "P", "S", "Cl", "K", "Ca", "Fe", "Zn", "Se",
    "Br", "Sn", "I",
)  # fmt: skip
# The RDKit values with a one-hot slot of their own, per categorical feature; others -> "other".
DEGREES = (0, 1, 2, 3, 4, 5)
FORMAL_CHARGES = (-2, -1, 0, 1, 2)
# RDKit HybridizationType integer values: S=1, SP=2, SP2=3, SP3=4, SP3D=6, SP3D2=7.
HYBRIDIZATIONS = {1: "s", 2: "sp", 3: "sp2", 4: "sp3", 6: "sp3d", 7: "sp3d2"}
TOTAL_HS = (0, 1, 2, 3, 4)
# RDKit ChiralType: UNSPECIFIED=0, TETRAHEDRAL_CW=1, TETRAHEDRAL_CCW=2.
CHIRAL_TAGS = {0: "none", 1: "cw", 2: "ccw"}
# Bond types by RDKit's GetBondTypeAsDouble (aromatic = 1.5); the order is read as a float because
# that is cheaper than the BondType enum. Types with no slot (dative, zero, ...) count as -1.
BOND_TYPES = {1.0: "single", 2.0: "double", 3.0: "triple", 1.5: "aromatic"}
_ORDER_OF_BOND_TYPE = {1: 1.0, 2: 2.0, 3: 3.0, 12: 1.5}  # RDKit BondType value -> order
# RDKit BondStereo: NONE=0, ANY=1, Z=2, E=3, CIS=4, TRANS=5.
BOND_STEREO = {0: "none", 1: "any", 2: "z", 3: "e", 4: "cis", 5: "trans"}

ATOM_FEATURES = (
    "element", "degree", "formal_charge", "hybridization", "aromatic", "total_h", "in_ring",
    "chirality", "mass",
)  # fmt: skip
BOND_FEATURES = ("bond_type", "conjugated", "in_ring", "stereo")

_ISOTOPE = re.compile(r"\[\d")
# Stereo marks or a bracket hydrogen atom ([H], [2H], not [Hg]) need the full MolFromSmiles.
_NEEDS_FULL_PARSE = re.compile(r"[@/\\]|\[\d*H(?![a-z])")
FAST_PATHS = True
# Elements whose bonds RDKit never makes dative on its own (metals' bonds it may, on sanitizing).
_ORGANIC = frozenset((1, 5, 6, 7, 8, 9, 14, 15, 16, 17, 33, 34, 35, 52, 53))
_LUT_SIZE = 256  # covers every atomic number and every RDKit enum value used as a code


def _lookup(values: Sequence[int], size: int = _LUT_SIZE, offset: int = 0) -> np.ndarray:
    """code[value + offset] = slot of value in `values`, len(values) ("other") for the rest."""
    lut = np.full(size, len(values), dtype=np.int64)
    for slot, value in enumerate(values):
        lut[value + offset] = slot
    return lut


class MolGraphFeaturizer:
    """SMILES -> atom / bond feature arrays for message passing (`type: graph` in config).

    atom_features / bond_features: the feature groups to include, in the fixed order of
      ATOM_FEATURES / BOND_FEATURES (default: all).
    elements: element symbols with their own one-hot slot (others share one "other" slot).
    add_descriptors: also store RDKit 2D descriptors per molecule (`descriptor_names`, default
      all of RDKit's `Descriptors._descList`); slow (milliseconds per molecule).
    largest_fragment: keep only the largest fragment of a multi-fragment SMILES (salts, solvents),
      so that every graph is one connected component. Validation may already have done this.
    chunk_size: molecules per unit of work (and per progress line at most).
    """

    def __init__(
        self,
        atom_features: Sequence[str] | None = None,
        bond_features: Sequence[str] | None = None,
        elements: Sequence[str] | None = None,
        add_descriptors: bool = False,
        descriptor_names: Sequence[str] | None = None,
        largest_fragment: bool = False,
        chunk_size: int = 512,
    ):
        self.atom_features = _check_groups(atom_features, ATOM_FEATURES, "atom_features")
        self.bond_features = _check_groups(bond_features, BOND_FEATURES, "bond_features")
        self.elements = tuple(elements) if elements is not None else DEFAULT_ELEMENTS
        _Tables.get(self.elements)  # fails early, naming an unknown element symbol
        self.add_descriptors = bool(add_descriptors)
        self.descriptor_names = list(descriptor_names) if descriptor_names else None
        if self.add_descriptors:
            self.descriptor_names = _descriptor_names(self.descriptor_names)
        self.largest_fragment = bool(largest_fragment)
        if int(chunk_size) < 1:
            raise ValueError(f"graph featurizer: chunk_size must be >= 1, got {chunk_size!r}")
        self.chunk_size = int(chunk_size)
        self._atom_names = self._names(self.atom_features, _atom_slots(self.elements))
        self._bond_names = self._names(self.bond_features, _bond_slots())

    @staticmethod
    def _names(groups: Sequence[str], slots: dict[str, list[str]]) -> list[str]:
        return [f"{group}:{slot}" if len(slots[group]) > 1 else group
                for group in groups for slot in slots[group]]  # fmt: skip

    @property
    def atom_dim(self) -> int:
        return len(self._atom_names)

    @property
    def bond_dim(self) -> int:
        return len(self._bond_names)

    def __len__(self) -> int:
        """The atom feature size (what a node embedding layer takes in)."""
        return self.atom_dim

    def options(self) -> dict[str, Any]:
        """Plain settings a worker process needs (the featurizer rebuilt from these)."""
        return {
            "atom_features": list(self.atom_features),
            "bond_features": list(self.bond_features),
            "elements": list(self.elements),
            "add_descriptors": self.add_descriptors,
            "descriptor_names": self.descriptor_names,
            "largest_fragment": self.largest_fragment,
            "chunk_size": self.chunk_size,
            "fast_paths": FAST_PATHS,
        }

    def featurize_table(self, inputs: Sequence[str], threads: int = 1) -> dict:
        """Featurize validated SMILES (clean-table order) into the flat dict described above.

        Raises ValueError naming the input index (0-based, clean-table order) and the SMILES if
        RDKit cannot parse one or it has no atoms: validation should have rejected it.
        """
        import torch

        inputs = list(inputs)
        chunks = [(start, inputs[start : start + self.chunk_size])
                  for start in range(0, len(inputs), self.chunk_size)]  # fmt: skip
        parts: list[dict[str, np.ndarray]] = []
        done = 0
        for part in _map_chunks(self.options(), chunks, threads):
            parts.append(part)
            done += len(part["n_atoms"])
            log.info("featurized %d/%d molecules", done, len(inputs))
        n_descriptors = len(self.descriptor_names) if self.add_descriptors else None
        out = _concatenate(parts, self.atom_dim, self.bond_dim, n_descriptors)
        features: dict[str, Any] = {key: torch.from_numpy(value) for key, value in out.items()}
        features.update(
            atom_dim=self.atom_dim,
            bond_dim=self.bond_dim,
            n_atoms=int(out["atom_ptr"][-1]),
            n_edges=int(out["edge_ptr"][-1]),
            atom_feature_names=list(self._atom_names),
            bond_feature_names=list(self._bond_names),
        )
        if self.add_descriptors:
            features["descriptor_names"] = list(self.descriptor_names)
            n_bad = int(torch.isnan(features["descriptors"]).sum())
            log.info("%d RDKit descriptors; %d undefined values (NaN)",
                     features["descriptors"].shape[1], n_bad)  # fmt: skip
        return features

    def featurize(self, smiles: str) -> dict[str, np.ndarray]:
        """One molecule as numpy arrays (x, edge_index, edge_attr[, descriptors]); for tests."""
        part = _featurize_chunk(self.options(), 0, [smiles])
        keys = ["x", "edge_index", "edge_attr"] + (["descriptors"] if self.add_descriptors else [])
        return {key: part[key] for key in keys}


def _check_groups(groups: Sequence[str] | None, valid: Sequence[str], what: str) -> tuple:
    if groups is None:
        return tuple(valid)
    unknown = [g for g in groups if g not in valid]
    if unknown:
        raise ValueError(f"graph featurizer: unknown {what} {unknown}; valid: {', '.join(valid)}")
    return tuple(g for g in valid if g in groups)  # fixed order, whatever order the config used


def _atom_slots(elements: Sequence[str]) -> dict[str, list[str]]:
    return {
        "element": [*elements, "other"],
        "degree": [*map(str, DEGREES), "other"],
        "formal_charge": [*map(str, FORMAL_CHARGES), "other"],
        "hybridization": [*HYBRIDIZATIONS.values(), "other"],
        "aromatic": ["aromatic"],
        "total_h": [*map(str, TOTAL_HS), "other"],
        "in_ring": ["in_ring"],
        "chirality": [*CHIRAL_TAGS.values(), "other"],
        "mass": ["mass"],
    }


def _bond_slots() -> dict[str, list[str]]:
    return {
        "bond_type": [*BOND_TYPES.values(), "other"],
        "conjugated": ["conjugated"],
        "in_ring": ["in_ring"],
        "stereo": [*BOND_STEREO.values(), "other"],
    }


def _descriptor_names(names: Sequence[str] | None) -> list[str]:
    from biomol_dl.features.fingerprints import descriptor_names

    return descriptor_names(names, "graph featurizer: ")


def _map_chunks(options: dict, chunks: list[tuple[int, list[str]]], threads: int):
    """Featurize chunks in order, in worker processes when threads > 1 and it pays off."""
    threads = max(1, int(threads or 1))
    if threads == 1 or len(chunks) < 2:
        for start, smiles in chunks:
            yield _featurize_chunk(options, start, smiles)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # fork where there is one: spawn and forkserver re-import the __main__ module in every worker,
    # and a Snakemake rule script is an unguarded __main__ that would featurize all over again.
    # The workers only run RDKit and numpy, never torch, so the parent's threads do not matter.
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    workers = min(threads, len(chunks))
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = [
            pool.submit(_featurize_chunk, options, start, smiles) for start, smiles in chunks
        ]
        for future in futures:
            yield future.result()


class _Tables:
    """Lookup tables from RDKit integer values to one-hot slots, built once per process."""

    _cache: dict[tuple, _Tables] = {}

    def __init__(self, elements: Sequence[str]):
        from rdkit import Chem

        table = Chem.GetPeriodicTable()
        try:
            atomic_numbers = [table.GetAtomicNumber(symbol) for symbol in elements]
        except RuntimeError as err:
            raise ValueError(
                f"graph featurizer: unknown element symbol in {list(elements)}"
            ) from err
        self.element = _lookup(atomic_numbers)
        self.degree = _lookup(DEGREES)
        self.charge = _lookup(FORMAL_CHARGES, offset=_LUT_SIZE // 2)
        self.hybridization = _lookup(list(HYBRIDIZATIONS))
        self.total_h = _lookup(TOTAL_HS)
        self.chirality = _lookup(list(CHIRAL_TAGS))
        self.bond_type = _lookup([int(2 * order) for order in BOND_TYPES], size=16)
        self.stereo = _lookup(list(BOND_STEREO))
        flags = Chem.SanitizeFlags
        # Sanitization without the symmetrized SSSR: ring membership, not the smallest ring set.
        self.ring_membership_only = flags.SANITIZE_ALL ^ flags.SANITIZE_SYMMRINGS
        self.mass = np.zeros(_LUT_SIZE, dtype=np.float32)
        for z in range(1, 119):
            self.mass[z] = table.GetAtomicWeight(z) / 100.0

    @classmethod
    def get(cls, elements: Sequence[str]) -> _Tables:
        key = tuple(elements)
        if key not in cls._cache:
            cls._cache[key] = cls(elements)
        return cls._cache[key]


def _featurize_chunk(
    options: dict, start: int, smiles_list: Sequence[str]
) -> dict[str, np.ndarray]:
    """Featurize one chunk of SMILES into concatenated numpy arrays (runs in workers too)."""
    from rdkit import rdBase

    with rdBase.BlockLogs():  # RDKit's own parse errors: ours below name the row instead
        return _featurize_molecules(options, start, smiles_list)


def _featurize_molecules(
    options: dict, start: int, smiles_list: Sequence[str]
) -> dict[str, np.ndarray]:
    raw = _read_molecules(options, start, smiles_list)
    return _graph_arrays(options, _Tables.get(options["elements"]), raw)


def _read_molecules(options: dict, start: int, smiles_list: Sequence[str]) -> dict[str, list]:
    """Parse each SMILES and collect the raw per-atom / per-bond codes of the chunk, as lists."""
    from rdkit import Chem

    Atom, Bond = Chem.Atom, Chem.Bond
    tables = _Tables.get(options["elements"])
    fast = options.get("fast_paths", True)
    # RDKit descriptors count and classify rings: molecules kept for them get the full ring set.
    sanitize_ops = None if options["add_descriptors"] else tables.ring_membership_only
    chooser = None
    if options["largest_fragment"]:
        from rdkit.Chem.MolStandardize import rdMolStandardize

        chooser = rdMolStandardize.LargestFragmentChooser()

    # Integer codes for every atom / bond of the chunk; one list per feature, extended per molecule.
    z, charge, hyb, arom, total_h, chiral, mass = ([] for _ in range(7))
    begin, end, order, conj, bond_ring, stereo = ([] for _ in range(6))
    n_atoms, n_bonds, mols_for_descriptors = [], [], []
    # Unbound methods as locals: this loop runs once per molecule and attribute lookups add up.
    atomic_num, hybridization, aromatic = (
        Atom.GetAtomicNum,
        Atom.GetHybridization,
        Atom.GetIsAromatic,
    )
    hydrogens, formal_charge, chiral_tag = (
        Atom.GetTotalNumHs,
        Atom.GetFormalCharge,
        Atom.GetChiralTag,
    )
    bond_begin, bond_end = Bond.GetBeginAtomIdx, Bond.GetEndAtomIdx
    bond_order, conjugated = Bond.GetBondTypeAsDouble, Bond.GetIsConjugated
    ring_bond, bond_stereo = Bond.IsInRing, Bond.GetStereo
    for k, smi in enumerate(smiles_list):
        mol = _parse(smi, Chem, fast, sanitize_ops)
        if mol is None or mol.GetNumAtoms() == 0:
            why = "RDKit cannot parse it" if mol is None else "it has no atoms"
            raise ValueError(
                f"graph featurizer: input {start + k} (0-based clean-table row) {smi!r}: {why}; "
                "the clean table must hold valid SMILES"
            )
        if chooser is not None and "." in smi:
            mol = chooser.choose(mol)
        n = mol.GetNumAtoms()
        atoms = list(map(mol.GetAtomWithIdx, range(n)))
        z_mol = list(map(atomic_num, atoms))
        z.extend(z_mol)
        hyb.extend(map(hybridization, atoms))
        if not fast:  # otherwise: aromatic atoms are the ends of aromatic bonds, see below
            arom.extend(map(aromatic, atoms))
        total_h.extend(map(hydrogens, atoms))
        # Not skippable by looking at the string: sanitization charges N(=O)=O into [N+](=O)[O-].
        charge.extend(map(formal_charge, atoms))
        # A SMILES string carries chirality, isotopes and double-bond stereo only with these
        # characters; without them RDKit's answer is known and a call per atom or bond is saved.
        if not fast or "@" in smi:
            chiral.extend(map(chiral_tag, atoms))
        else:
            chiral.extend([0] * n)
        if not fast or _ISOTOPE.search(smi):
            mass.extend(m / 100.0 for m in map(Atom.GetMass, atoms))
        else:
            mass.extend([np.nan] * n)  # filled from the periodic table below
        nb = mol.GetNumBonds()
        bonds = list(map(mol.GetBondWithIdx, range(nb)))
        begin.extend(map(bond_begin, bonds))
        end.extend(map(bond_end, bonds))
        # Dative bonds ("->", or metal bonds sanitization makes dative) have order 1.0 too, so a
        # molecule with an atom outside the organic elements takes the slower BondType call.
        dative = not fast or not _ORGANIC.issuperset(z_mol)
        if dative:
            orders = [_ORDER_OF_BOND_TYPE.get(int(t), -1.0) for t in map(Bond.GetBondType, bonds)]
        else:
            orders = list(map(bond_order, bonds))
        order.extend(orders)
        # Conjugation needs a multiple or aromatic bond; ring bonds need a ring.
        if dative or (nb and max(orders) > 1.0):
            conj.extend(map(conjugated, bonds))
        else:
            conj.extend([False] * nb)
        if not fast or mol.GetRingInfo().NumRings():
            bond_ring.extend(map(ring_bond, bonds))
        else:
            bond_ring.extend([False] * nb)
        if not fast or "/" in smi or "\\" in smi:
            stereo.extend(map(bond_stereo, bonds))
        else:
            stereo.extend([0] * nb)
        n_atoms.append(n)
        n_bonds.append(nb)
        if options["add_descriptors"]:
            mols_for_descriptors.append(mol)
    return {
        "z": z, "charge": charge, "hyb": hyb, "arom": arom, "total_h": total_h, "chiral": chiral,
        "mass": mass, "begin": begin, "end": end, "order": order, "conj": conj,
        "bond_ring": bond_ring, "stereo": stereo, "n_atoms": n_atoms, "n_bonds": n_bonds,
        "mols_for_descriptors": mols_for_descriptors,
    }  # fmt: skip


def _graph_arrays(options: dict, tables: _Tables, raw: dict[str, list]) -> dict[str, np.ndarray]:
    """The chunk's codes as one-hot atom / bond features, directed edges and per-molecule counts."""
    fast = options.get("fast_paths", True)
    n_atoms, n_bonds, begin, end = raw["n_atoms"], raw["n_bonds"], raw["begin"], raw["end"]
    z, total_h, order, arom, mass = raw["z"], raw["total_h"], raw["order"], raw["arom"], raw["mass"]
    charge, hyb, chiral, conj, stereo = (
        raw["charge"], raw["hyb"], raw["chiral"], raw["conj"], raw["stereo"]
    )  # fmt: skip
    n_atoms_arr = np.asarray(n_atoms, dtype=np.int64)
    n_bonds_arr = np.asarray(n_bonds, dtype=np.int64)
    total = int(n_atoms_arr.sum())
    # Chunk-wide atom numbers of each bond's ends, for per-atom counts over bonds.
    bond_offset = np.repeat(np.concatenate([[0], np.cumsum(n_atoms_arr)[:-1]]), n_bonds_arr)
    begin_arr = np.asarray(begin, dtype=np.int64)
    end_arr = np.asarray(end, dtype=np.int64)
    ends = np.concatenate([begin_arr + bond_offset, end_arr + bond_offset])
    bond_ring_arr = np.asarray(raw["bond_ring"], dtype=bool).astype(np.float32)

    z_arr = np.asarray(z, dtype=np.int64)
    h_arr = np.asarray(total_h, dtype=np.int64)
    # Total degree = bonded graph neighbours + hydrogens RDKit keeps implicit (GetTotalDegree).
    degree = np.bincount(ends, minlength=total) + h_arr
    # An atom is in a ring exactly when one of its bonds is: RDKit derives both from one ring set.
    atom_ring = np.bincount(ends, weights=np.tile(bond_ring_arr, 2), minlength=total) > 0
    # Orders 1, 1.5, 2, 3 -> 2, 3, 4, 6; other types (-1, 0, 4+) land on slots that mean "other".
    twice_order = np.clip(np.rint(2 * np.asarray(order, dtype=np.float64)), 0, 15).astype(np.int64)
    if fast:  # sanitization flags the atoms and bonds of an aromatic ring together
        aromatic_bond = (twice_order == 3).astype(np.float32)
        atom_aromatic = np.bincount(ends, weights=np.tile(aromatic_bond, 2), minlength=total) > 0
    else:
        atom_aromatic = np.asarray(arom, dtype=bool)
    mass_arr = np.asarray(mass, dtype=np.float32)
    table_mass = np.isnan(mass_arr)
    mass_arr[table_mass] = tables.mass[z_arr[table_mass]]
    charge_arr = np.asarray(charge, dtype=np.int64) + _LUT_SIZE // 2

    atom_columns = {
        "element": (tables.element[z_arr], len(options["elements"]) + 1),
        "degree": (tables.degree[np.minimum(degree, _LUT_SIZE - 1)], len(DEGREES) + 1),
        "formal_charge": (tables.charge[np.clip(charge_arr, 0, _LUT_SIZE - 1)],
                          len(FORMAL_CHARGES) + 1),
        "hybridization": (tables.hybridization[_enum_codes(hyb)],
                          len(HYBRIDIZATIONS) + 1),
        "aromatic": atom_aromatic.astype(np.float32),
        "total_h": (tables.total_h[np.minimum(h_arr, _LUT_SIZE - 1)], len(TOTAL_HS) + 1),
        "in_ring": atom_ring.astype(np.float32),
        "chirality": (tables.chirality[_enum_codes(chiral)], len(CHIRAL_TAGS) + 1),
        "mass": mass_arr,
    }  # fmt: skip
    x = _assemble(atom_columns, options["atom_features"], total)

    bond_columns = {
        "bond_type": (tables.bond_type[twice_order], len(BOND_TYPES) + 1),
        "conjugated": np.asarray(conj, dtype=bool).astype(np.float32),
        "in_ring": bond_ring_arr,
        "stereo": (tables.stereo[_enum_codes(stereo)], len(BOND_STEREO) + 1),
    }
    bond_attr = _assemble(bond_columns, options["bond_features"], len(begin_arr))
    # Each bond becomes two directed edges, 2k (begin->end) and 2k+1 (end->begin).
    edge_index = np.empty((2, 2 * len(begin_arr)), dtype=np.int64)
    edge_index[0, 0::2], edge_index[1, 0::2] = begin_arr, end_arr
    edge_index[0, 1::2], edge_index[1, 1::2] = end_arr, begin_arr
    out = {
        "x": x,
        "edge_index": edge_index,
        "edge_attr": np.repeat(bond_attr, 2, axis=0),
        "n_atoms": n_atoms_arr,
        "n_edges": 2 * n_bonds_arr,
    }
    if options["add_descriptors"]:
        out["descriptors"] = _descriptors(raw["mols_for_descriptors"], options["descriptor_names"])
    return out


def _enum_codes(values: list) -> np.ndarray:
    # int() per RDKit enum value beats numpy's own conversion of int subclasses (about 2x).
    return np.fromiter(map(int, values), dtype=np.int64, count=len(values))


def _parse(smiles: str, Chem: Any, fast: bool, sanitize_ops: Any = None) -> Any:
    """MolFromSmiles, minus the work a plain SMILES and these features cannot need.

    MolFromSmiles = parse + sanitize + assign stereochemistry + remove explicit hydrogens. Without
    '@', '/', '\\' or a bracket hydrogen atom the last two change nothing, and they cost about a
    third of the parse time. `sanitize_ops` (None = all; `_Tables.ring_membership_only`) can also
    skip sanitization's symmetrized SSSR (about a tenth of the parse): the graph features need
    ring *membership* only, which RDKit then finds with its faster ring search, and aromaticity
    perception finds its own rings either way.
    """
    if not fast or _NEEDS_FULL_PARSE.search(smiles):
        return Chem.MolFromSmiles(smiles)
    mol = Chem.MolFromSmiles(smiles, sanitize=False)
    if mol is None:
        return None
    try:
        Chem.SanitizeMol(
            mol, Chem.SanitizeFlags.SANITIZE_ALL if sanitize_ops is None else sanitize_ops
        )
    except Exception:  # MolFromSmiles answers None for a molecule that fails sanitization
        return None
    return mol


def _assemble(columns: dict[str, Any], groups: Sequence[str], n_rows: int) -> np.ndarray:
    """One float32 matrix: one-hot blocks for (codes, width) columns, raw values for the rest."""
    widths = [col[1] if isinstance(col, tuple) else 1 for col in (columns[g] for g in groups)]
    out = np.zeros((n_rows, sum(widths)), dtype=np.float32)
    rows = np.arange(n_rows)
    offset = 0
    for group, width in zip(groups, widths, strict=True):
        column = columns[group]
        if isinstance(column, tuple):
            out[rows, offset + column[0]] = 1.0
        else:
            out[:, offset] = column
        offset += width
    return out


def _descriptors(mols: list, names: Sequence[str] | None) -> np.ndarray:
    from biomol_dl.features.fingerprints import descriptor_table

    out = descriptor_table(mols, _descriptor_names(names), len(mols))
    out[~np.isfinite(out)] = np.nan
    # float32 cannot hold a few descriptors (Ipc reaches 1e40); those become NaN, not inf.
    out[np.abs(out) > np.finfo(np.float32).max] = np.nan
    return out.astype(np.float32)


def _concatenate(
    parts: list[dict], atom_dim: int, bond_dim: int, n_descriptors: int | None
) -> dict:
    if not parts:
        empty = {
            "x": np.zeros((0, atom_dim), np.float32),
            "edge_index": np.zeros((2, 0), np.int64),
            "edge_attr": np.zeros((0, bond_dim), np.float32),
            "atom_ptr": np.zeros(1, np.int64),
            "edge_ptr": np.zeros(1, np.int64),
        }
        if n_descriptors is not None:
            empty["descriptors"] = np.zeros((0, n_descriptors), np.float32)
        return empty
    n_atoms = np.concatenate([p["n_atoms"] for p in parts])
    n_edges = np.concatenate([p["n_edges"] for p in parts])
    out = {
        "x": np.concatenate([p["x"] for p in parts]),
        "edge_index": np.concatenate([p["edge_index"] for p in parts], axis=1),
        "edge_attr": np.concatenate([p["edge_attr"] for p in parts]),
        "atom_ptr": np.concatenate([[0], np.cumsum(n_atoms)]).astype(np.int64),
        "edge_ptr": np.concatenate([[0], np.cumsum(n_edges)]).astype(np.int64),
    }
    if n_descriptors is not None:
        out["descriptors"] = np.concatenate([p["descriptors"] for p in parts])
    return out
