"""Expanding-window walk-forward with an embargo (docs/architecture.md section 6.3).

Rows ``[start, n)`` are usable (``start`` = the first row with every feature warmed up). The first
``minTrainFraction`` of them is the initial training window; the rest is cut into ``folds`` contiguous
test blocks. For the test block ``[a, b)`` the model is trained on rows ``i`` with

* ``start <= i < a - embargo`` (the embargo drops the bars right before the test block), and
* a known label whose horizon ends before the test block: ``i + horizon < a`` (purging; with
  ``embargo >= horizon`` this already holds, it is checked again so a smaller embargo can never leak).

Scores exist only for test rows; every other row gets NaN, which becomes a flat position. The
deployable model is refit afterwards on every labelled usable row (``refit_rows``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from clm_trainer.models.base import ModelTrainer, SeriesData


class WalkForwardError(ValueError):
    """Too little data for the requested folds: permanent, names the field and the fix."""

    def __init__(self, field: str, message: str, fix: str) -> None:
        super().__init__(f"{field}: {message}; fix: {fix}")
        self.field = field
        self.fix = fix


@dataclass(frozen=True)
class Fold:
    number: int
    train_idx: np.ndarray  # row indices used for fitting (ascending)
    test_start: int  # first test row (inclusive)
    test_end: int  # last test row + 1

    @property
    def test_idx(self) -> np.ndarray:
        return np.arange(self.test_start, self.test_end)

    @property
    def train_start(self) -> int:
        return int(self.train_idx[0])

    @property
    def train_end(self) -> int:
        """Last training row + 1."""
        return int(self.train_idx[-1]) + 1


MIN_TRAIN_ROWS = 50
MIN_TEST_ROWS = 10


def first_usable_row(features: np.ndarray) -> int:
    """The first row from which every feature is finite (the end of the longest warm-up)."""
    finite = np.flatnonzero(np.isfinite(features).all(axis=1))
    # Later non-finite rows (rare: e.g. a zero price range) are left to the model, which sees NaN as
    # missing; only the leading warm-up is cut.
    return int(finite[0]) if finite.size else features.shape[0]


def make_folds(n_rows: int, start: int, target: np.ndarray, *, folds: int, min_train_fraction: float,
               embargo: int, horizon: int) -> list[Fold]:
    """The folds of an expanding walk-forward over rows ``[start, n_rows)``."""
    usable = n_rows - start
    initial = int(np.floor(usable * min_train_fraction))
    test_total = usable - initial
    if initial - embargo < MIN_TRAIN_ROWS or test_total < folds * MIN_TEST_ROWS:
        raise WalkForwardError(
            "spec.evaluation.folds",
            f"{usable} usable bars cannot hold an initial training window of >= {MIN_TRAIN_ROWS} bars plus "
            f"the embargo ({embargo}) and {folds} test blocks of >= {MIN_TEST_ROWS} bars",
            "use more data, fewer folds, a smaller embargo or a different minTrainFraction")
    edges = start + initial + np.linspace(0, test_total, folds + 1).round().astype(int)
    labelled = np.isfinite(target)
    rows = np.arange(n_rows)
    out: list[Fold] = []
    for k in range(folds):
        a, b = int(edges[k]), int(edges[k + 1])
        mask = (rows >= start) & (rows < a - embargo) & (rows + horizon < a) & labelled
        out.append(Fold(number=k + 1, train_idx=rows[mask], test_start=a, test_end=b))
    return out


def inner_validation_split(train_idx: np.ndarray, *, fraction: float, embargo: int,
                           horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """(fit rows, validation rows) inside one fold's training rows, purged like the outer split.

    The validation rows are the last ``fraction`` of ``train_idx`` (time order); the inner model is
    fitted on the earlier rows ``i`` with ``i < v0 - embargo`` and ``i + horizon < v0`` (``v0`` the
    first validation row), so no fitted label overlaps the validation bars. Nothing outside
    ``train_idx`` is used: the fold's test bars cannot influence what is chosen on this split.
    """
    rows = np.asarray(train_idx)
    cut = int(np.floor(rows.size * (1.0 - fraction)))
    if cut >= rows.size or rows.size - cut < MIN_TEST_ROWS:
        raise WalkForwardError("spec.evaluation.positions.validationFraction",
                               f"{rows.size} training rows leave {rows.size - cut} validation rows",
                               f"use more data or a larger validationFraction (>= {MIN_TEST_ROWS} rows)")
    v0 = int(rows[cut])
    validation: np.ndarray = rows[cut:]
    fit: np.ndarray = rows[(rows < v0 - embargo) & (rows + horizon < v0)]
    if fit.size < MIN_TRAIN_ROWS:
        raise WalkForwardError("spec.evaluation.positions.validationFraction",
                               f"the inner fit window has {fit.size} rows (< {MIN_TRAIN_ROWS}) after the "
                               f"embargo ({embargo})", "use more data or a smaller validationFraction")
    return fit, validation


def refit_rows(n_rows: int, start: int, target: np.ndarray) -> np.ndarray:
    """Every usable row with a label: what the deployable model is trained on."""
    rows = np.arange(n_rows)
    selected: np.ndarray = rows[(rows >= start) & np.isfinite(target)]
    return selected


def out_of_sample_scores(factory: Callable[[], ModelTrainer], data: SeriesData,
                         folds: list[Fold]) -> np.ndarray:
    """Scores for every row: the fold model's prediction on test rows, NaN elsewhere."""
    scores = np.full(data.features.shape[0], np.nan, dtype="float64")
    for fold in folds:
        model = factory()
        model.fit(data, fold.train_idx)
        predicted = np.asarray(model.predict(data, fold.test_idx), dtype="float64")
        scores[fold.test_start:fold.test_end] = predicted
    return scores
