"""Training speed of the deep models (forecasters: seconds per epoch; PPO: steps per second), and
PPO's results over seeds beside the tree models'.

    .venv/bin/python bench/deep.py [--device cpu|cuda] [--windows 20000] [--batch 256] [--epochs 3]
                                   [--threads N] [--json FILE]
    .venv/bin/python bench/deep.py ppo-speed [--timesteps 20000] [--rows 10000]
    .venv/bin/python bench/deep.py ppo-seeds [--seeds 1 2 3 4 5] [--algorithms ppo xgboost lightgbm]

``ppo-speed``: one PPO fit with the default (CPU-budget) hyperparameters on the first ``--rows`` usable
rows of the default planted series; timesteps (decisions) per second of wall and of CPU time, with
the rollout collection and the gradient updates together, as the trainer runs them.

``ppo-seeds``: the default walk-forward (``pipeline.evaluate_walk_forward``, every spec field at its
default) of each algorithm on ``builtin:synthetic?kind=planted&seed=S`` and, for PPO, on
``kind=random_walk&seed=S``: net Sharpe, trades, max drawdown, DSR, whether the criteria passed (and
which failed), and the forward-filter benchmark on the same bars. Every series parameter is the builtin
default (``clm_trainer.synthetic``, whose docstring gives them); each row is printed as it finishes.

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
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from clm_contract.hyperparameters import NHiTSHyperparameters, PatchTSTHyperparameters
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


def ppo_speed(timesteps: int, rows: int) -> dict[str, Any]:
    from clm_contract.hyperparameters import validate_hyperparameters
    from clm_contract.training_job import FeaturesSpec, TargetSpec
    from clm_trainer.features import build_series
    from clm_trainer.models.deep import torch_threads
    from clm_trainer.models.ppo import PPOTrainer
    from clm_trainer.synthetic import generate, parse_synthetic_uri
    from clm_trainer.walkforward import first_usable_row

    bars = generate(parse_synthetic_uri("builtin:synthetic?kind=planted&seed=1")).bars
    data = build_series(bars, FeaturesSpec(), TargetSpec())
    start = first_usable_row(data.features)
    trainer = PPOTrainer(validate_hyperparameters("ppo", {"totalTimesteps": timesteps}), 1,
                         DeviceChoice("cpu", "benchmark"))
    wall, cpu = time.perf_counter(), time.process_time()
    trainer.fit(data, np.arange(start, start + rows))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    done = int(trainer.summary["timesteps"])
    return {"timesteps": done, "rows": rows, "decisions_per_episode": trainer.summary["decisionsPerEpisode"],
            "torch_threads": torch_threads(), "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
            "steps_per_s_wall": round(done / wall), "steps_per_s_cpu": round(done / cpu),
            "load_average": os.getloadavg()[0]}


def ppo_seeds(seeds: list[int], algorithms: list[str],
              kinds: list[str] | None = None) -> list[dict[str, Any]]:
    from clm_contract.training_job import TrainingJobSpec
    from clm_trainer.data import load_dataset
    from clm_trainer.pipeline import evaluate_walk_forward

    rows = []
    for algorithm in algorithms:
        wanted = kinds or (["planted", "random_walk"] if algorithm == "ppo" else ["planted"])
        for kind in wanted:
            for seed in seeds:
                spec = TrainingJobSpec.model_validate({
                    "modelName": "bench", "algorithm": algorithm,
                    "dataset": {"uri": f"builtin:synthetic?kind={kind}&seed={seed}", "symbol": "SYN"}})
                started = time.perf_counter()
                outcome = evaluate_walk_forward(spec, load_dataset(spec.dataset, None).bars)
                m = outcome.metrics
                benchmark = outcome.benchmark["metrics"]["sharpe"] if outcome.benchmark else None
                row = {"algorithm": algorithm, "kind": kind, "seed": seed, "sharpe": round(m.sharpe, 2),
                       "trades": m.trades, "max_drawdown": round(m.max_drawdown, 3), "dsr": round(m.dsr, 3),
                       "passed": outcome.evaluation.passed,
                       "failed_criteria": outcome.evaluation.failed_criteria,
                       "filter_sharpe": None if benchmark is None else round(benchmark, 2),
                       "wall_s": round(time.perf_counter() - started, 1)}
                print(json.dumps(row), flush=True)
                rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("ppo-speed", "ppo-seeds"):
        sub = argparse.ArgumentParser(prog=f"deep.py {argv[0]}")
        sub.add_argument("--timesteps", type=int, default=20_000)
        sub.add_argument("--rows", type=int, default=10_000)
        sub.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
        sub.add_argument("--algorithms", nargs="+", default=["ppo", "xgboost", "lightgbm"])
        sub.add_argument("--kinds", nargs="+", choices=["planted", "random_walk"], default=None,
                         help="default: both for ppo, planted for the others")
        sub.add_argument("--json", type=Path, default=None)
        options = sub.parse_args(argv[1:])
        result: Any = (ppo_speed(options.timesteps, options.rows) if argv[0] == "ppo-speed"
                       else ppo_seeds(options.seeds, options.algorithms, options.kinds))
        print(json.dumps(result, indent=2))
        if options.json:
            options.json.write_text(json.dumps(result, indent=2) + "\n")
        return 0
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
