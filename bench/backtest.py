"""Benchmark: clm_trainer.backtest.run_backtest (+ all metrics, PSR/DSR) against backtesting.py.

Run: ``.venv/bin/python bench/backtest.py`` (``--quick`` skips backtesting.py at 1M bars, ~1 min).
Single thread: the BLAS/OpenMP thread variables are set to 1 before numpy is imported (numpy's
element-wise kernels are single-threaded anyway). Both libraries get the same
signals on the same generated hourly prices; the timing of ours includes every metric and the daily
aggregation for PSR/DSR, backtesting.py's includes its ``compute_stats``.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from clm_trainer.backtest import positions_from_scores, run_backtest  # noqa: E402
from clm_trainer.positions import PositionRule, hold_positions, volatility_sizes  # noqa: E402


def market(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, pd.DatetimeIndex]:
    """Hourly returns with a weak planted edge in a smoothed score: trades last ~10-30 bars."""
    rng = np.random.default_rng(seed)
    r = rng.normal(0.0, 0.005, n)
    r[0] = 0.0
    noisy_forecast = np.roll(r, -1) * 0.3 / 0.005 + rng.normal(size=n)
    score = pd.Series(noisy_forecast).ewm(span=30).mean().to_numpy()
    pos = positions_from_scores(score, 0.1)
    pos[0] = 0.0  # backtesting.py's first decision is at the close of bar 1
    close = 100.0 * np.cumprod(1.0 + r)
    return r, close, pos, pd.date_range("2015-01-01", periods=n, freq="h", tz="UTC")


def time_it(fn: Callable[[], object], repeats: int, warm_up: bool = True) -> tuple[float, float, float]:
    """(median wall, min wall, median CPU) seconds over ``repeats`` runs, after one warm-up run.

    CPU time is reported beside wall time because a shared machine's other processes stretch the
    wall clock of a single-threaded run without changing the work it does.
    """
    if warm_up:
        fn()
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - t0)
    return statistics.median(wall), min(wall), statistics.median(cpu)


def backtesting_py(close: np.ndarray, pos: np.ndarray, fee: float) -> pd.Series:
    from backtesting import Backtest, Strategy

    n = close.size
    padded = np.append(close, close[-1])  # backtesting.py finalizes at the previous close
    df = pd.DataFrame({"Open": padded, "High": padded, "Low": padded, "Close": padded, "Volume": 1.0},
                      index=pd.date_range("2015-01-01", periods=n + 1, freq="h"))

    class Follow(Strategy):  # type: ignore[misc]
        def init(self) -> None:
            pass

        def next(self) -> None:
            i = len(self.data) - 1
            if i >= n - 1:
                return
            want, have = pos[i], float(np.sign(self.position.size))
            if want == have:
                return
            if want == 0:
                self.position.close()
            elif want > 0:
                self.buy(size=0.5)
            else:
                self.sell(size=0.5)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stats: pd.Series = Backtest(df, Follow, cash=1e12, commission=fee, trade_on_close=True,
                                    exclusive_orders=True, finalize_trades=True).run()
    return stats


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip backtesting.py at 1M bars")
    parser.add_argument("--repeats", type=int, default=15, help="timed runs of ours per size")
    parser.add_argument("--bt-repeats", type=int, default=3, help="timed runs of backtesting.py")
    args = parser.parse_args()

    fee_bps = 10.0
    print(f"python {platform.python_version()}, numpy {np.__version__}, pandas {pd.__version__}, "
          f"{platform.machine()}, {os.cpu_count()} CPUs, 1 BLAS/OpenMP thread")
    header = (f"{'bars':>9} {'trades':>7} {'clm wall med':>12} {'min':>8} {'CPU med':>8} "
              f"{'backtesting.py wall':>19} {'CPU':>9} {'ratio wall':>10} {'CPU':>6}")
    print(header)
    print("-" * len(header))
    for n in (100_000, 1_000_000):
        r, close, pos, ts = market(n)

        def ours(r: np.ndarray = r, pos: np.ndarray = pos, ts: pd.DatetimeIndex = ts) -> object:
            return run_backtest(pos, r, fee_bps=fee_bps, slippage_bps=0.0, periods_per_year=8760,
                                timestamps=ts, n_trials=10)

        med, best, cpu = time_it(ours, args.repeats)
        trades = run_backtest(pos, r, fee_bps=fee_bps, slippage_bps=0.0, periods_per_year=8760).metrics.trades
        theirs, theirs_cpu, ratio, ratio_cpu = "skipped", "", "", ""
        if n <= 100_000 or not args.quick:
            stats = backtesting_py(close, pos, fee_bps / 1e4)
            if stats["# Trades"] != trades:
                print(f"trade counts differ: ours {trades}, backtesting.py {stats['# Trades']}",
                      file=sys.stderr)
                return 1

            def theirs_run(close: np.ndarray = close, pos: np.ndarray = pos) -> object:
                return backtesting_py(close, pos, fee_bps / 1e4)

            bt_med, _, bt_cpu = time_it(theirs_run, args.bt_repeats, warm_up=False)  # just ran: warm
            theirs, theirs_cpu = f"{bt_med * 1e3:.0f} ms", f"{bt_cpu * 1e3:.0f} ms"
            ratio, ratio_cpu = f"{bt_med / med:.0f}x", f"{bt_cpu / cpu:.0f}x"
        print(f"{n:>9,} {trades:>7,} {med * 1e3:9.1f} ms {best * 1e3:5.1f} ms {cpu * 1e3:5.1f} ms "
              f"{theirs:>19} {theirs_cpu:>9} {ratio:>10} {ratio_cpu:>6}")
    # The position layer (a sequential rule: one Python loop per bar) is not part of run_backtest; it
    # runs once per candidate on validation bars and once per fold on test bars.
    r, _, _, _ = market(1_000_000)
    scores = pd.Series(np.roll(r, -1) / 0.005 * 0.3 + np.random.default_rng(1).normal(size=r.size)).ewm(
        span=30).mean().to_numpy()
    rule = PositionRule(entry=0.1, exit=0.0, min_hold=24)
    sizes = volatility_sizes(r, window=168, target=0.1, periods_per_year=8760)
    med, best, cpu = time_it(lambda: hold_positions(scores, rule, allow_short=True, sizes=sizes), 3)
    sizing = time_it(lambda: volatility_sizes(r, window=168, target=0.1, periods_per_year=8760), 3)[2]
    print(f"position layer, 1,000,000 bars: hold_positions {med * 1e3:.0f} ms wall / {cpu * 1e3:.0f} ms CPU, "
          f"volatility_sizes {sizing * 1e3:.0f} ms CPU")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
