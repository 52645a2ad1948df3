"""Helpers shared by the protein test files (imported explicitly, not a pytest conftest).

A tiny random ESM-2 (same architecture and 33-token vocabulary as esm2_t6_8M_UR50D, two small
layers) saved with save_pretrained into a folder: it exercises the "local folder" path of the
resolver and the ESM code path of the PLM featurizers and the LoRA family, in well under a second.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ESM_CONFIG = (ROOT / ".." / "shared" / "plm" / "esm2_t6_8M_config").resolve()

SEQUENCES = [
    "MKTAYIAKQRQISFVKSHFSRQ",
    "EVQLVESGGGLVQPGGSLRLSCAASGFTFS",
    "MSTNPKPQRKTKRNTNRRPQDVKFPGG",
    "GSHMAKLV",
    "QVQLQESGPGLVKPSETLSLTCTVSGGSISSYYWS",
    "MADEEKLPPGWEKRMSRSSGRVYYFNHITNASQWERPSG",
]


def make_tiny_esm(folder: Path, seed: int = 0) -> Path:
    """Save a random 2-layer ESM-2 model and the real ESM-2 tokenizer into `folder`."""
    import torch
    from transformers import EsmConfig, EsmModel, EsmTokenizer

    config = EsmConfig.from_pretrained(str(ESM_CONFIG))
    config.hidden_size, config.num_hidden_layers, config.num_attention_heads = 32, 2, 4
    config.intermediate_size = 64
    torch.manual_seed(seed)
    model = EsmModel(config, add_pooling_layer=False)
    model.save_pretrained(str(folder))
    EsmTokenizer(vocab_file=str(ESM_CONFIG / "vocab.txt")).save_pretrained(str(folder))
    return folder


def make_tiny_bert(folder: Path, seed: int = 0) -> Path:
    """Save a random 3-layer BERT (AntiBERTy's architecture, shrunk) with AntiBERTy's vocabulary."""
    import torch
    from transformers import BertConfig, BertModel

    from biomol_dl import plm

    vocab = plm.resolve_model("antiberty").tokenizer_dir / "vocab.txt"
    words = vocab.read_text().split()
    config = BertConfig(vocab_size=len(words), hidden_size=32, num_hidden_layers=3,
                        num_attention_heads=4, intermediate_size=64, max_position_embeddings=64,
                        pad_token_id=words.index("[PAD]"))  # fmt: skip
    torch.manual_seed(seed)
    BertModel(config, add_pooling_layer=False).save_pretrained(str(folder))
    (folder / "vocab.txt").write_text(vocab.read_text())
    return folder


def make_hub_cache(cache: Path, repo_id: str, folder: Path) -> Path:
    """Lay `folder` out as huggingface_hub's cache of `repo_id` (refs/main -> one snapshot), as
    a machine that downloaded the model once has it; HF_HUB_OFFLINE=1 then resolves from it."""
    import shutil

    commit = "0" * 40
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(folder, repo / "snapshots" / commit, dirs_exist_ok=True)
    return repo / "snapshots" / commit
