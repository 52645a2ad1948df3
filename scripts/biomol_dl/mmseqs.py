"""All-against-all sequence identity through MMseqs2, for the homology split's metric "mmseqs".

MMseqs2 is an optional dependency (a program, not a Python package): Debian/Ubuntu
`apt-get install mmseqs2`, conda `bioconda::mmseqs2`, or a release binary on PATH (or named by
the environment variable BIOMOL_DL_MMSEQS). Without it the split fails with one line saying so;
the k-mer metric needs nothing.

`identity_hits(sequences, min_identity)` runs `mmseqs easy-search` of the set against itself and
returns every reported pair (a < b, 0-based) with identity = identical aligned positions /
length of the shorter sequence (`nident / min(qlen, tlen)`, the definition of splits'
"identity" metric). Search settings: sensitivity 7.5 (its most sensitive preset), no cap on
hits per query (`--max-seqs` = the number of sequences), E-value cut-off off (1e9: short
identical peptides have large E-values), `--min-seq-id` a little below the threshold with
`--seq-id-mode 1` (the shorter sequence), one thread unless told (the split rule has one).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

ENV = "BIOMOL_DL_MMSEQS"
SENSITIVITY = 7.5


def executable() -> str:
    """The mmseqs program to run; ValueError (one line, how to install it) when there is none."""
    found = os.environ.get(ENV) or shutil.which("mmseqs")
    if not found:
        raise ValueError(
            "homology split: metric mmseqs needs the MMseqs2 program, which is not on PATH: "
            "install it (apt-get install mmseqs2, or conda install -c bioconda mmseqs2) or set "
            f"{ENV}=/path/to/mmseqs; metric kmer needs nothing"
        )
    return found


def identity_hits(
    sequences: Sequence[str], min_identity: float, threads: int | None = None
) -> pd.DataFrame:
    """Columns a, b (0-based indices, a < b) and identity, one row per pair MMseqs2 reports."""
    program = executable()
    n = len(sequences)
    threads = threads or 1
    with tempfile.TemporaryDirectory(prefix="biomol_dl_mmseqs_") as tmp:
        fasta, hits = Path(tmp, "in.fasta"), Path(tmp, "hits.tsv")
        fasta.write_text("".join(f">{i}\n{s}\n" for i, s in enumerate(sequences)))
        command = [
            program, "easy-search", str(fasta), str(fasta), str(hits), str(Path(tmp, "work")),
            "-a", "-s", str(SENSITIVITY), "--max-seqs", str(max(n, 1)), "-e", "1e9",
            "--min-seq-id", f"{max(0.0, min_identity - 0.05):.3f}", "--seq-id-mode", "1",
            "--format-output", "query,target,nident,qlen,tlen", "--threads", str(threads),
            "-v", "1",
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            tail = " ".join((done.stderr or done.stdout).split())[-300:]
            raise RuntimeError(f"mmseqs easy-search failed (exit {done.returncode}): {tail}")
        names = ["q", "t", "nident", "qlen", "tlen"]
        if hits.stat().st_size:
            table = pd.read_csv(hits, sep="\t", header=None, names=names)
        else:
            table = pd.DataFrame(columns=names, dtype=int)
    table = table[table["q"] != table["t"]]
    identity = table["nident"] / table[["qlen", "tlen"]].min(axis=1)
    pairs = pd.DataFrame(
        {
            "a": table[["q", "t"]].min(axis=1).astype(int),
            "b": table[["q", "t"]].max(axis=1).astype(int),
            "identity": identity.astype(float),
        }
    )
    # A pair is reported in both directions, sometimes with different alignments: keep the max.
    return pairs.groupby(["a", "b"], as_index=False)["identity"].max()
