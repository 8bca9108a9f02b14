"""Where to train, decided once per run and logged with the reason (docs/architecture.md section 6.5).

A GPU is used only when the spec asks for one (``resources.gpu > 0``) AND one is usable by the
algorithm's library; otherwise the run goes on on CPU with a notice saying why. Tree runs never
import torch: the CUDA driver is probed through ``libcuda`` directly.
"""

from __future__ import annotations

import ctypes
import functools
import math
import os
from pathlib import Path

from clm_trainer.models.base import DeviceChoice

ENV_THREADS = "CLM_NUM_THREADS"
# Trained with PyTorch (CUDA through torch): the forecasters and the PPO agent (stable-baselines3).
TORCH_ALGORITHMS = frozenset({"nhits", "patchtst", "ppo"})


def cuda_device_count() -> int:
    """CUDA devices visible to the driver (0 when there is no driver or no device)."""
    try:
        libcuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return 0
    count = ctypes.c_int(0)
    try:
        if libcuda.cuInit(0) != 0 or libcuda.cuDeviceGetCount(ctypes.byref(count)) != 0:
            return 0
    except AttributeError:
        return 0
    return int(count.value)


def _xgboost_cuda_build() -> bool:
    import xgboost

    return bool(xgboost.build_info().get("USE_CUDA", False))


@functools.cache
def lightgbm_gpu_device_type() -> str | None:
    """"cuda" or "gpu" when this LightGBM build can train on it, else None (probed on a tiny dataset)."""
    import lightgbm
    import numpy as np

    x = np.arange(200, dtype="float64").reshape(100, 2)
    y = (x[:, 0] % 2).astype("float64")
    for device_type in ("cuda", "gpu"):
        try:
            lightgbm.train({"device_type": device_type, "verbose": -1, "num_iterations": 1},
                           lightgbm.Dataset(x, y))
        except Exception:  # noqa: BLE001 - any failure means "not usable here"
            continue
        return device_type
    return None


def choose_device(algorithm: str, gpus_requested: int) -> DeviceChoice:
    """CPU unless a GPU was requested and the algorithm's library can use one here."""
    if gpus_requested <= 0:
        return DeviceChoice("cpu", "spec.resources.gpu is 0")
    if algorithm in TORCH_ALGORITHMS:
        import torch

        if torch.cuda.is_available():
            return DeviceChoice("cuda", f"{gpus_requested} GPU(s) requested; torch sees "
                                        f"{torch.cuda.device_count()} CUDA device(s)")
        return DeviceChoice("cpu", "GPU requested but torch sees no CUDA device; training on CPU")
    devices = cuda_device_count()
    if devices == 0:
        return DeviceChoice("cpu", "GPU requested but no CUDA device/driver is present; training on CPU")
    if algorithm == "xgboost":
        if _xgboost_cuda_build():
            return DeviceChoice("cuda", f"GPU requested; {devices} CUDA device(s); xgboost built with CUDA")
        return DeviceChoice("cpu", "GPU requested but this xgboost build has no CUDA support; "
                                   "training on CPU")
    if algorithm == "lightgbm":
        kind = lightgbm_gpu_device_type()
        if kind is not None:
            return DeviceChoice("cuda", f"GPU requested; {devices} CUDA device(s); "
                                        f"lightgbm device_type={kind}")
        return DeviceChoice("cpu", "GPU requested but this lightgbm build supports neither device_type=cuda "
                                   "nor gpu; training on CPU")
    return DeviceChoice("cpu", f"no GPU support for algorithm {algorithm!r}; training on CPU")


CGROUP_ROOT = Path("/sys/fs/cgroup")


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def cgroup_cpu_limit(root: Path = CGROUP_ROOT) -> float | None:
    """The container's CPU quota in CPUs, or None when there is none.

    cgroup v2: ``cpu.max`` = ``"<quota> <period>"`` or ``"max <period>"``. cgroup v1:
    ``cpu/cpu.cfs_quota_us`` (-1 = none) over ``cpu/cpu.cfs_period_us`` (also looked up as
    ``cpu,cpuacct/``). A Kubernetes CPU limit of 1500m reads 150000 100000 -> 1.5.
    """
    v2 = _read(root / "cpu.max")
    if v2 is not None:
        parts = v2.split()
        if len(parts) >= 2 and parts[0] != "max":
            try:
                quota, period = int(parts[0]), int(parts[1])
            except ValueError:
                return None
            return quota / period if quota > 0 and period > 0 else None
        return None
    for directory in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):
        quota_text = _read(root / directory / "cpu.cfs_quota_us")
        period_text = _read(root / directory / "cpu.cfs_period_us")
        if quota_text is None or period_text is None:
            continue
        try:
            quota, period = int(quota_text), int(period_text)
        except ValueError:
            return None
        return quota / period if quota > 0 and period > 0 else None
    return None


def _cgroup_cpu_limit() -> float | None:
    return cgroup_cpu_limit()


def thread_count() -> int:
    """Threads for the libraries: $CLM_NUM_THREADS, else the container's CPU quota (cgroup v2 or v1,
    rounded down, at least 1, at most the CPUs we may use: a 1500m limit gets 1 thread), else the
    CPUs we may use.

    A fixed count (rather than "all cores") keeps runs reproducible and avoids oversubscribing a pod
    whose CPU limit is smaller than the node: on a busy 2-core machine 2 threads ran 20-30x slower
    than 1.
    """
    env = os.environ.get(ENV_THREADS)
    if env and env.isdigit() and int(env) > 0:
        return int(env)
    limit = _cgroup_cpu_limit()
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if limit is not None:
        return max(1, min(available, math.floor(limit)))
    return max(1, available)
