"""What one epoch of frozen embedding and of LoRA fine-tuning costs for a protein LM, measured.

For BENCHMARKS.md ("Protein models"): before queueing PLM jobs on a machine, time a few real
steps of the embedded AntiBERTy (or any model the resolver takes) at the sequence lengths of
each benchmark dataset and scale to an epoch. Run with the project venv:

    python scripts/bench/plm_cpu_cost.py --model antiberty --threads 2 \
        --dataset gb1_three_vs_rest:265:2691:8733 --dataset amp:30:4160:5200 \
        --precision fp32 --precision bf16 --precision int8 \
        --lora-layers 2 --lora-precision bf16

Each --dataset is NAME:LENGTH:N_TRAIN:N_ALL (residues per sequence, training sequences, all
sequences). Measured per dataset, on random residue strings of that length:

  embed    no-grad forward passes, mean-pooled (what the featurize rule does once for
           plm_embedding), at each --precision (fp32 | bf16 | int8, as biomol_dl.plm runs them),
           with the cosine similarity of each sequence's embedding to fp32's (min and mean)
  lora     forward + backward + AdamW step through LoRA adapters (r 8 on query/key/value, as
           config/benchmarks/proteins.yaml) with the plm_lora model itself: on every layer
           (--lora-layers 0), or on the top K layers only, whose input then comes from the
           frozen-layer cache (plm_tokens cache_layer = L - K), at --lora-precision
  cache    with --lora-layers K: the no-grad pass through the L - K frozen layers that builds
           that cache once (at --cache-precision)

Prints one JSON object: sequences/s for each, and the minutes one pass over the dataset takes
(an extrapolation from --steps timed batches after one warm-up batch); `cpu_bound_*` are the same
from the process's CPU seconds / threads, what the step takes when no other job shares the cores
(on a busy machine the wall-clock rates are lower by the share other jobs take).
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


def random_sequences(length: int, size: int, rng: random.Random) -> list[str]:
    return ["".join(rng.choice(AMINO_ACIDS) for _ in range(length)) for _ in range(size)]


CPU_SECONDS: list[float] = []  # process CPU seconds per step of each seconds_per_step call


def seconds_per_step(step, warmup: int, steps: int) -> float:
    """Wall seconds per step; the process CPU seconds per step go to CPU_SECONDS (on a shared
    machine, CPU seconds / threads is what the step would take with the cores to itself)."""
    for _ in range(warmup):
        step()
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step()
    CPU_SECONDS.append((time.process_time() - c0) / steps)
    return (time.perf_counter() - t0) / steps


def _quiet_rate(n: int, threads: int) -> float:
    """Sequences/s with the cores to itself: n / (the last step's CPU seconds / threads)."""
    return round(n / (CPU_SECONDS[-1] / threads), 2)


def embed_rows(args, resolved, tokenizer, seqs: list[str], n_all: int) -> dict:
    """seq/s and cosine to fp32 of mean-pooled embeddings at each precision."""
    import torch

    from biomol_dl import plm

    out, reference = {}, None
    for precision in args.precision:
        model, used = plm.for_inference(plm.load_model(resolved), precision, "cpu")
        result = {}

        def step(model=model, used=used, result=result):
            result["X"] = plm.embed_sequences(
                model, tokenizer, seqs, batch_tokens=10**9, precision=used
            )

        seconds = seconds_per_step(step, 1, args.steps)
        rate = len(seqs) / seconds
        quiet = _quiet_rate(len(seqs), args.threads)
        row = {"used": used, "sequences_per_s": round(rate, 2),
               "all_minutes": round(n_all / rate / 60, 1), "cpu_bound_sequences_per_s": quiet,
               "cpu_bound_all_minutes": round(n_all / quiet / 60, 1)}  # fmt: skip
        if used == "fp32" and reference is None:
            reference = result["X"]
        if reference is not None:
            cosine = torch.nn.functional.cosine_similarity(result["X"], reference, dim=1)
            row["cosine_to_fp32_min"] = round(float(cosine.min()), 6)
            row["cosine_to_fp32_mean"] = round(float(cosine.mean()), 6)
        out[precision] = row
    return out


def lora_row(args, resolved, tokenizer, seqs: list[str], n_train: int, n_all: int) -> dict:
    """One training step of the plm_lora model, on the top --lora-layers layers from a cache."""
    import torch

    from biomol_dl import plm, training
    from biomol_dl.batching import collate_tokens
    from biomol_dl.models.nets import plm_lora

    n_layers = int(resolved.config["num_hidden_layers"])
    k = args.lora_layers
    cache_layer = n_layers - k if k else None
    features = {"model": args.model, "cache_layer": cache_layer}
    params = {"model": None, "quantization": None, "gradient_checkpointing": False,
              "lora_r": 8, "lora_alpha": 16, "lora_dropout": 0.1, "target_modules": None,
              "layers_to_transform": None, "pooling": "mean", "head_hidden": 0,
              "head_dropout": 0.1}  # fmt: skip
    model = plm_lora.build_model(features, 1, params).train()
    ids = [torch.tensor(i) for i in plm.tokenize(tokenizer, seqs)]
    batch = collate_tokens([{"input_ids": i, "y": torch.zeros(1)} for i in ids], "input_ids", 0)
    row: dict = {"lora_layers": k or n_layers, "cache_layer": cache_layer}
    if cache_layer is not None:
        frozen = plm.load_model(resolved)
        result = {}

        def cache_step():
            result["states"] = plm.states_entering(
                frozen, tokenizer, seqs, layer=cache_layer, batch_tokens=10**9,
                precision=args.cache_precision,
            )  # fmt: skip

        seconds = seconds_per_step(cache_step, 1, args.steps)
        row["cache_precision"] = plm.resolve_precision(args.cache_precision, "cpu")
        row["cache_sequences_per_s"] = round(len(seqs) / seconds, 2)
        row["cache_all_minutes"] = round(n_all / (len(seqs) / seconds) / 60, 1)
        quiet = _quiet_rate(len(seqs), args.threads)
        row["cache_cpu_bound_sequences_per_s"] = quiet
        row["cache_cpu_bound_all_minutes"] = round(n_all / quiet / 60, 1)
        row["cache_mb_all"] = round(
            n_all * len(ids[0]) * int(resolved.config["hidden_size"]) * 2 / 1e6
        )
        batch["states"] = torch.nn.utils.rnn.pad_sequence(result["states"], True).float()
    device = torch.device("cpu")
    precision = training.resolve_precision(args.lora_precision, device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=5e-4)

    def lora_step():
        optimizer.zero_grad()
        with plm.autocast(device, precision):
            out = model(batch)
        out.float().square().mean().backward()
        optimizer.step()

    seconds = seconds_per_step(lora_step, 1, args.steps)
    rate = len(seqs) / seconds
    quiet = _quiet_rate(len(seqs), args.threads)
    row.update(precision=precision, train_sequences_per_s=round(rate, 2),
               epoch_minutes=round(n_train / rate / 60, 1), cpu_bound_train_sequences_per_s=quiet,
               cpu_bound_epoch_minutes=round(n_train / quiet / 60, 1))  # fmt: skip
    return row


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="antiberty")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dataset", action="append", required=True,
                        help="NAME:LENGTH:N_TRAIN:N_ALL")  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--precision", action="append", choices=("fp32", "bf16", "int8"),
                        help="embedding precisions (default: fp32)")  # fmt: skip
    parser.add_argument("--lora-layers", type=int, default=0,
                        help="LoRA on the top K layers, fed from the cache (0: all, no cache)")  # fmt: skip
    parser.add_argument("--lora-precision", default="fp32", choices=("fp32", "bf16"))
    parser.add_argument("--cache-precision", default="fp32", choices=("fp32", "bf16", "int8"))
    parser.add_argument("--no-lora", action="store_true", help="embedding rows only")
    args = parser.parse_args(argv)
    args.precision = args.precision or ["fp32"]

    import torch

    from biomol_dl import plm

    torch.set_num_threads(args.threads)
    resolved = plm.resolve_model(args.model)
    tokenizer = plm.load_tokenizer(resolved)
    rng = random.Random(0)
    out: dict = {"model": args.model, "threads": args.threads, "batch_size": args.batch_size,
                 "steps": args.steps, "torch": torch.__version__,
                 "cpu_bf16": plm.cpu_supports_bf16(), "datasets": {}}  # fmt: skip
    for spec in args.dataset:
        name, length, n_train, n_all = spec.split(":")
        length, n_train, n_all = int(length), int(n_train), int(n_all)
        seqs = random_sequences(length, args.batch_size, rng)
        row: dict = {"length": length, "n_train": n_train, "n_all": n_all}
        row["embed"] = embed_rows(args, resolved, tokenizer, seqs, n_all)
        if not args.no_lora:
            row["lora"] = lora_row(args, resolved, tokenizer, seqs, n_train, n_all)
        out["datasets"][name] = row
        print(name, json.dumps(row), file=sys.stderr, flush=True)
    import resource

    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
