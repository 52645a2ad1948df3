"""Run chemprop's CLI unchanged, recording how long every training epoch takes.

For chemprop_side_by_side.py, which runs this file with the chemprop venv's interpreter:

    .venv-chemprop/bin/python scripts/bench/chemprop_timed.py EPOCHS_JSON train --data-path ...

Chemprop's CLI logs no epoch times, so a Lightning callback is added to every Trainer it builds;
it only reads the clock. EPOCHS_JSON gets [{"epoch", "seconds", "val_seconds", "examples"}]:
seconds from the start of an epoch's training batches to the end of its validation pass (what
biomol_dl's history.csv counts too), val_seconds the validation part of it.
"""

from __future__ import annotations

import json
import sys
import time


def main(argv: list[str]) -> None:
    out_json, cli_args = argv[0], argv[1:]
    import lightning.pytorch as pl

    epochs: list[dict] = []

    class EpochClock(pl.Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            self.t0 = time.perf_counter()
            self.n = 0

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.n += int(batch.w.shape[0])  # chemprop's TrainingBatch: one weight per molecule

        def on_validation_start(self, trainer, pl_module):
            self.v0 = time.perf_counter()

        def on_validation_end(self, trainer, pl_module):
            self.v1 = time.perf_counter()

        def on_train_epoch_end(self, trainer, pl_module):
            now = time.perf_counter()
            val = self.v1 - self.v0 if getattr(self, "v0", 0) > self.t0 else 0.0
            epochs.append({"epoch": len(epochs) + 1, "seconds": now - self.t0,
                           "val_seconds": val, "examples": self.n})  # fmt: skip

    original_init = pl.Trainer.__init__

    def init_with_clock(self, *args, **kwargs):
        kwargs["callbacks"] = [*(kwargs.get("callbacks") or []), EpochClock()]
        original_init(self, *args, **kwargs)

    pl.Trainer.__init__ = init_with_clock
    from chemprop.cli.main import main as chemprop_main

    sys.argv = ["chemprop", *cli_args]
    try:
        chemprop_main()
    finally:
        with open(out_json, "w") as fh:
            json.dump(epochs, fh, indent=1)


if __name__ == "__main__":
    main(sys.argv[1:])
