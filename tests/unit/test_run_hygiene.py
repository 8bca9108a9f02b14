"""Data and run hygiene (issue 9): the trailing incomplete bar, the cgroup CPU quota, the operator's
count of earlier attempts (priorTrials)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from clm_operator.domain.schedule import trained_versions, training_job_for
from clm_trainer import device
from clm_trainer.data import TRAILING_BAR_RULE, drop_incomplete_last_bar


def bars_with_last_volume(last: float, n: int = 100) -> pd.DataFrame:
    volume = np.full(n, 1000.0)
    volume[-1] = last
    close = np.linspace(100, 110, n)
    return pd.DataFrame({"open": close, "high": close, "low": close, "close": close, "volume": volume},
                        index=pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC"))


def test_an_incomplete_last_bar_is_dropped_and_reported() -> None:
    kept, dropped = drop_incomplete_last_bar(bars_with_last_volume(50.0))
    assert len(kept) == 99 and dropped == "2024-01-05T03:00:00Z"
    whole, none = drop_incomplete_last_bar(bars_with_last_volume(150.0))  # 15 % of the median: complete
    assert len(whole) == 100 and none is None
    # only the last bar, and only when there is a median to compare with
    assert drop_incomplete_last_bar(bars_with_last_volume(0.0, n=40))[1] is None
    assert "median volume of the 48 bars before it" in TRAILING_BAR_RULE


def test_the_loader_reports_the_trailing_bar(tmp_path: Path) -> None:
    from clm_contract.training_job import DatasetSpec
    from clm_trainer.data import load_dataset

    bars = bars_with_last_volume(1.0)
    frame = bars.reset_index(drop=True)
    frame.insert(0, "unix", bars.index.as_unit("ms").asi8)
    path = tmp_path / "bars.csv"
    frame.to_csv(path, index=False)
    loaded = load_dataset(DatasetSpec(uri=f"file://{path}", symbol="SYN"))
    report = loaded.report.to_dict()
    assert loaded.report.rows_kept == 99 and report["trailingBarDropped"] == "2024-01-05T03:00:00Z"
    assert report["lastBar"] == "2024-01-05T02:00:00Z" and report["trailingBarRule"] == TRAILING_BAR_RULE


@pytest.mark.parametrize(("files", "expected"), [
    ({"cpu.max": "150000 100000\n"}, 1.5),
    ({"cpu.max": "max 100000\n"}, None),
    ({"cpu/cpu.cfs_quota_us": "200000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 2.0),
    ({"cpu,cpuacct/cpu.cfs_quota_us": "-1\n", "cpu,cpuacct/cpu.cfs_period_us": "100000\n"}, None),
    ({}, None),
])
def test_cgroup_cpu_quota_v1_and_v2(tmp_path: Path, files: dict[str, str], expected: float | None) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert device.cgroup_cpu_limit(tmp_path) == expected


@pytest.mark.parametrize(("quota", "threads"), [(1.5, 1), (0.5, 1), (2.0, 2), (64.0, None)])
def test_threads_follow_the_quota_not_the_host(monkeypatch: pytest.MonkeyPatch, quota: float,
                                               threads: int | None) -> None:
    monkeypatch.delenv(device.ENV_THREADS, raising=False)
    monkeypatch.setattr(device, "_cgroup_cpu_limit", lambda: quota)
    available = len(device.os.sched_getaffinity(0))
    assert device.thread_count() == (threads if threads is not None and threads <= available
                                     else min(available, int(quota)))


def test_operator_passes_the_models_earlier_versions_as_prior_trials() -> None:
    assert trained_versions(["Succeeded", "Failed", "Succeeded", "Running", "Pending"]) == 2
    model = {"metadata": {"name": "m", "namespace": "ns", "uid": "u"},
             "spec": {"template": {"algorithm": "xgboost", "dataset": {"uri": "builtin:synthetic",
                                                                         "symbol": "X"}},
                      "promotion": {"criteria": {"minDsr": 0.9}}}}
    body = training_job_for(model, "m-1", "periodic", "schedule", prior_trials=4)
    assert body["spec"]["evaluation"] == {"criteria": {"minDsr": 0.9}, "priorTrials": 4}
    assert training_job_for(model, "m-2", "manual", "me")["spec"]["evaluation"]["priorTrials"] == 0
