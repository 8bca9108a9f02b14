"""Training speed of the deep forecasters: seconds per epoch at a fixed size, CPU or CUDA.

    .venv/bin/python bench/deep.py [--device cpu|cuda] [--windows 20000] [--batch 256] [--epochs 3]
                                   [--threads N] [--json FILE]

Both models with their default (paper-like) hyperparameters, horizon 24: N-HiTS reads 5 x 24 = 120
bars, PatchTST 96 bars (12 patches). The windows are random numbers: speed does not depend on
their content. Each epoch is a full pass over the training windows plus the validation pass, exactly
the loop the trainer runs (``clm_trainer.models.deep.train_module``), timed with the device
synchronised. The first epoch (allocator, kernel selection warm-up) is reported separately; the
figure to compare is the median of the following ones. Inference throughput is measured too.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from clm_operator.api.hyperparameters import NHiTSHyperparameters, PatchTSTHyperparameters
from clm_trainer.models.base import DeviceChoice
from clm_trainer.models.deep import (
    DeepForecastTrainer,
    TrainingConfig,
    amp_dtype_for,
    batch_predict,
    build_core,
    train_module,
)
from clm_trainer.models.nhits import NHiTSTrainer
from clm_trainer.models.patchtst import PatchTSTTrainer

HORIZON = 24


def bench_model(name: str, trainer: DeepForecastTrainer, windows: int, batch: int, epochs: int,
                device: torch.device, amp: bool) -> dict[str, Any]:
    input_size = trainer.input_size_for(HORIZON)
    config = trainer.core_config_for(input_size, HORIZON)
    rng = np.random.default_rng(0)
    # validation_fraction 0.2 of (windows / 0.8) -> exactly `windows` training windows per epoch
    total = int(round(windows / 0.8))
    x = rng.standard_normal((total, input_size)).astype(np.float32)
    y = rng.standard_normal((total, HORIZON)).astype(np.float32)
    torch.manual_seed(0)
    module = build_core(name, config)
    params = sum(p.numel() for p in module.parameters())
    training = TrainingConfig(max_epochs=epochs, batch_size=batch, patience=epochs + 1,
                              validation_fraction=0.2, mixed_precision=amp)
    record = train_module(module, x, y, training, seed=0, device=device)
    steady = record.epoch_seconds[1:] or record.epoch_seconds
    steady_cpu = record.epoch_cpu_seconds[1:] or record.epoch_cpu_seconds
    amp_dtype = amp_dtype_for(device, amp)
    started = time.perf_counter()
    batch_predict(module, x, device, batch_size=4096, amp_dtype=amp_dtype)
    if device.type == "cuda":
        torch.cuda.synchronize()
    infer_s = time.perf_counter() - started
    return {
        "model": name, "parameters": params, "input_size": input_size, "horizon": HORIZON,
        "train_windows": record.train_windows, "batch": batch, "epochs": record.epochs,
        "first_epoch_s": round(record.epoch_seconds[0], 3),
        "epoch_s_median": round(statistics.median(steady), 3),
        "epoch_s_min": round(min(steady), 3),
        "epoch_cpu_s_median": round(statistics.median(steady_cpu), 3),
        "windows_per_s": round(record.train_windows / min(steady)),
        "inference_windows_per_s": round(total / infer_s), "amp": record.amp_dtype,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--windows", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")
    parser.add_argument("--no-amp", action="store_true", help="CUDA: train in float32")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)

    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but torch sees no CUDA device", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    choice = DeviceChoice(args.device, "benchmark")
    models = [("nhits", NHiTSTrainer(NHiTSHyperparameters(), 0, choice)),
              ("patchtst", PatchTSTTrainer(PatchTSTHyperparameters(), 0, choice))]
    machine = (torch.cuda.get_device_name(0) if args.device == "cuda"
               else f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads")
    print(f"torch {torch.__version__} on {args.device} ({machine}); {args.windows} training windows, "
          f"batch {args.batch}, {args.epochs} epochs")
    rows = [bench_model(name, trainer, args.windows, args.batch, args.epochs, device, not args.no_amp)
            for name, trainer in models]
    header = ["model", "parameters", "input_size", "first_epoch_s", "epoch_s_median", "epoch_s_min",
              "epoch_cpu_s_median", "windows_per_s", "inference_windows_per_s", "amp"]
    print(" | ".join(header))
    for row in rows:
        print(" | ".join(str(row[h]) for h in header))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {"device": args.device, "machine": machine, "torch": torch.__version__, "results": rows}
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
