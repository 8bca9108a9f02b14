"""Where to train, decided once per run and logged with the reason (DESIGN.md section 6.5).

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
DEEP_ALGORITHMS = frozenset({"nhits", "patchtst"})


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
    if algorithm in DEEP_ALGORITHMS:
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


def _cgroup_cpu_limit() -> float | None:
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    return int(quota) / int(period)


def thread_count() -> int:
    """Threads for the libraries: $CLM_NUM_THREADS, else the container's CPU limit, else the CPUs we may use.

    A fixed count (rather than "all cores") keeps runs reproducible and avoids oversubscribing a pod
    whose CPU limit is smaller than the node.
    """
    env = os.environ.get(ENV_THREADS)
    if env and env.isdigit() and int(env) > 0:
        return int(env)
    limit = _cgroup_cpu_limit()
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if limit is not None:
        return max(1, min(available, math.ceil(limit)))
    return max(1, available)
