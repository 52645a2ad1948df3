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
