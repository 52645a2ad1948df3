"""What one epoch of frozen embedding and of LoRA fine-tuning costs for a protein LM, measured.

For BENCHMARKS.md ("Protein models"): before queueing PLM jobs on a machine, time a few real
steps of the embedded AntiBERTy (or any model the resolver takes) at the sequence lengths of
each benchmark dataset and scale to an epoch. Run with the project venv:

    python scripts/bench/plm_cpu_cost.py --model antiberty --threads 2 \
        --dataset gb1_three_vs_rest:265:2691:8733 --dataset amp:30:4160:5200

Each --dataset is NAME:LENGTH:N_TRAIN:N_ALL (residues per sequence, training sequences, all
sequences). Measured per dataset, on random residue strings of that length:

  embed   forward passes only, no grad (what the featurize rule does once for plm_embedding;
          every sequence of the dataset)
  lora    forward + backward + AdamW step through LoRA adapters (r 8 on query/key/value, as
          config/benchmarks/proteins.yaml), the training sequences, once per epoch

Prints one JSON object: sequences/s for each, and the minutes one pass over the dataset takes.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from biomol_dl.residues import STANDARD as AMINO_ACIDS  # noqa: E402


def batch_of(tokenizer, length: int, size: int, rng: random.Random) -> dict:
    from biomol_dl import plm

    seqs = ["".join(rng.choice(AMINO_ACIDS) for _ in range(length)) for _ in range(size)]
    ids = plm.tokenize(tokenizer, seqs)
    import torch

    return {"input_ids": torch.tensor(ids), "attention_mask": torch.ones(len(ids), len(ids[0]))}


def seconds_per_step(step, warmup: int, steps: int) -> float:
    for _ in range(warmup):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - t0) / steps


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="antiberty")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dataset", action="append", required=True,
                        help="NAME:LENGTH:N_TRAIN:N_ALL")  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args(argv)

    import torch

    from biomol_dl import plm

    torch.set_num_threads(args.threads)
    resolved = plm.resolve_model(args.model)
    tokenizer = plm.load_tokenizer(resolved)
    model = plm.load_model(resolved)
    rng = random.Random(0)
    out: dict = {"model": args.model, "threads": args.threads, "batch_size": args.batch_size,
                 "torch": torch.__version__, "datasets": {}}  # fmt: skip
    lora = plm.apply_lora(
        plm.load_model(resolved), r=8, alpha=16, dropout=0.1, model_type=resolved.model_type
    )
    lora.train()
    trainable = [p for p in lora.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=5e-4)
    for spec in args.dataset:
        name, length, n_train, n_all = spec.split(":")
        length, n_train, n_all = int(length), int(n_train), int(n_all)
        batch = batch_of(tokenizer, length, args.batch_size, rng)

        def embed_step(batch=batch):
            with torch.no_grad():
                model(**batch).last_hidden_state.mean(dim=1)

        def lora_step(batch=batch):
            optimizer.zero_grad()
            loss = lora(**batch).last_hidden_state.mean()
            loss.backward()
            optimizer.step()

        embed_s = seconds_per_step(embed_step, 1, args.steps)
        lora_s = seconds_per_step(lora_step, 1, args.steps)
        embed_rate, lora_rate = args.batch_size / embed_s, args.batch_size / lora_s
        out["datasets"][name] = {
            "length": length,
            "n_train": n_train,
            "n_all": n_all,
            "embed_sequences_per_s": round(embed_rate, 2),
            "lora_train_sequences_per_s": round(lora_rate, 2),
            "embed_all_minutes": round(n_all / embed_rate / 60, 1),
            "lora_epoch_minutes": round(n_train / lora_rate / 60, 1),
        }
        print(name, out["datasets"][name], file=sys.stderr, flush=True)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
