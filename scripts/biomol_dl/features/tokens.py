"""SMILES tokens for the SMILES transformer: a regex tokenizer, a vocabulary, randomized SMILES.

For `models/smiles_transformer.py` and the `featurize` rule (`type: smiles_tokens`).

- `tokenize(smiles)`: one token per bracket atom ("[C@@H]", "[nH+]", "[13CH3]"), two-letter
  organic atoms (Cl, Br), one-letter atoms (aromatic lower case too), ring closures ("1", "%12",
  "%(123)"), bonds (- = # $ : / \\ .), branches and "*". `"".join(tokenize(s)) == s` always; a
  character no rule covers raises, naming its position.
- `SmilesTokenizer`: a vocabulary built from the TRAIN split's tokens (special tokens first:
  <pad> <unk> <cls> <eos>), `encode` / `decode` that round-trip whatever the vocabulary knows.
- `SmilesTokenFeaturizer`: stores the token strings of every molecule (no ids: the vocabulary
  is built in training from the train rows only, so a validation or test molecule can never
  shape it).
- `randomized_smiles`: RDKit's random atom orderings (doRandom), seeded, for augmentation.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from biomol_dl.logutil import get

log = get(__name__)

PAD, UNK, CLS, EOS = "<pad>", "<unk>", "<cls>", "<eos>"
SPECIAL_TOKENS = (PAD, UNK, CLS, EOS)

_TOKEN = re.compile(
    r"\[[^\[\]]+\]"  # bracket atom: isotope, element, chirality, hydrogens, charge, class
    r"|Br|Cl"  # two-letter organic-subset atoms, before B and C
    r"|%\(\d+\)|%\d\d"  # ring closures beyond 9
    r"|[BCNOPSFI]|[bcnops]|\*"  # one-letter atoms, aromatic atoms, wildcard
    r"|\d"  # ring closures 0-9
    r"|->|<-"  # RDKit dative bonds, before the single bond "-"
    r"|[-=#$:/\\.~()]"  # bonds, dots, branches
)


def tokenize(smiles: str) -> list[str]:
    """The tokens of one SMILES; raises ValueError at the first character no rule covers."""
    tokens = _TOKEN.findall(smiles)
    if sum(map(len, tokens)) != len(smiles):
        position = 0
        for match in _TOKEN.finditer(smiles):
            if match.start() != position:
                break
            position = match.end()
        raise ValueError(
            f"SMILES tokenizer: cannot tokenize {smiles!r} at position {position} "
            f"({smiles[position : position + 10]!r})"
        )
    return tokens


class SmilesTokenizer:
    """Tokens <-> integer ids over a fixed vocabulary (special tokens at ids 0-3).

    Build it from the training molecules with `SmilesTokenizer.fit(token_lists)`; a token it has
    not seen encodes as <unk>.
    """

    def __init__(self, vocab: Sequence[str]):
        vocab = list(vocab)
        if vocab[: len(SPECIAL_TOKENS)] != list(SPECIAL_TOKENS):
            raise ValueError(f"SMILES vocabulary must start with {list(SPECIAL_TOKENS)}")
        if len(set(vocab)) != len(vocab):
            raise ValueError("SMILES vocabulary has duplicate tokens")
        self.vocab = vocab
        self.index = {token: i for i, token in enumerate(vocab)}
        self.pad_id, self.unk_id, self.cls_id, self.eos_id = range(len(SPECIAL_TOKENS))

    @classmethod
    def fit(cls, token_lists: Iterable[Sequence[str]], min_count: int = 1) -> SmilesTokenizer:
        """Vocabulary of the tokens seen at least `min_count` times, most frequent first."""
        counts = Counter(token for tokens in token_lists for token in tokens)
        kept = [t for t, c in sorted(counts.items(), key=lambda tc: (-tc[1], tc[0]))
                if c >= min_count and t not in SPECIAL_TOKENS]  # fmt: skip
        return cls([*SPECIAL_TOKENS, *kept])

    def __len__(self) -> int:
        return len(self.vocab)

    def encode(self, smiles: str, add_special: bool = True) -> list[int]:
        ids = [self.index.get(token, self.unk_id) for token in tokenize(smiles)]
        return [self.cls_id, *ids, self.eos_id] if add_special else ids

    def decode(self, ids: Iterable[int]) -> str:
        """The SMILES of `ids`, special tokens dropped (an unknown token shows as <unk>)."""
        specials = {self.pad_id, self.cls_id, self.eos_id}
        return "".join(self.vocab[i] for i in ids if i not in specials)


def randomized_smiles(smiles: str, seed: int) -> str:
    """One random (non-canonical) SMILES of the same molecule, reproducible from `seed`."""
    from rdkit import Chem

    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise ValueError(f"randomized SMILES: RDKit cannot parse {smiles!r}")
    return Chem.MolToRandomSmilesVect(mol, 1, randomSeed=int(seed) % (2**31 - 1))[0]


class SmilesTokenFeaturizer:
    """`type: smiles_tokens`: the token strings of every molecule, in clean-table order.

    Saved: tokens (list of token lists), n_tokens (max length), token_types (every distinct
    token in the table, sorted; sizes the model's embedding table, not its vocabulary).
    """

    def __init__(self) -> None:
        pass

    def featurize_table(self, inputs: Sequence[str], threads: int = 1) -> dict[str, Any]:
        token_lists = []
        for i, smiles in enumerate(inputs):
            try:
                token_lists.append(tokenize(smiles))
            except ValueError as err:
                raise ValueError(f"input {i} (0-based clean-table row): {err}") from None
            if (i + 1) % 5000 == 0:
                log.info("tokenized %d/%d molecules", i + 1, len(inputs))
        types = sorted({token for tokens in token_lists for token in tokens})
        n_tokens = max(map(len, token_lists), default=0)
        log.info("tokenized %d molecules: %d token types, longest %d tokens",
                 len(token_lists), len(types), n_tokens)  # fmt: skip
        return {"tokens": token_lists, "n_tokens": n_tokens, "token_types": types,
                "n_token_types": len(types)}  # fmt: skip
