from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
from clm_contract.model_version import VERSION_PATTERN
from clm_operator.domain.versioning import (
    job_name_for,
    label_value,
    model_version_name,
    version_for_training_job,
)
from hypothesis import given
from hypothesis import strategies as st

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def test_version_is_readable_and_deterministic() -> None:
    version = version_for_training_job("2026-11-23T10:15:00Z", "0b8c3f1e-1111-2222-3333-444455556666")
    assert version.startswith("v20261123-101500-")
    assert version == version_for_training_job(datetime(2026, 11, 23, 10, 15, tzinfo=UTC),
                                               "0b8c3f1e-1111-2222-3333-444455556666")
    assert re.match(VERSION_PATTERN, version)


def test_version_normalises_time_zones() -> None:
    plus_two = datetime(2026, 11, 23, 12, 15, tzinfo=timezone(timedelta(hours=2)))
    assert version_for_training_job(plus_two, "u") == version_for_training_job("2026-11-23T10:15:00Z", "u")


def test_two_runs_in_one_second_get_different_versions() -> None:
    assert version_for_training_job("2026-11-23T10:15:00Z", "uid-a") != version_for_training_job(
        "2026-11-23T10:15:00Z", "uid-b")


def test_empty_uid_is_refused() -> None:
    with pytest.raises(ValueError, match="uid"):
        version_for_training_job("2026-11-23T10:15:00Z", "")


@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 1, 1)),
       st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 1, 1)), st.text(min_size=1))
def test_versions_sort_like_their_creation_times(first: datetime, second: datetime, uid: str) -> None:
    a = version_for_training_job(first.replace(microsecond=0), uid)
    b = version_for_training_job(second.replace(microsecond=0), uid)
    if first.replace(microsecond=0) < second.replace(microsecond=0):
        assert a < b
    assert DNS_LABEL.match(a) and len(a) <= 63


def test_model_version_name() -> None:
    assert model_version_name("btc-xgb", "v20261123-101500-ab12c") == "btc-xgb-v20261123-101500-ab12c"


@given(st.from_regex(r"[a-z0-9]([-a-z0-9]{0,200}[a-z0-9])?", fullmatch=True))
def test_job_names_are_short_dns_labels_and_deterministic(name: str) -> None:
    job = job_name_for(name)
    assert len(job) <= 63 and DNS_LABEL.match(job)
    assert job == job_name_for(name)


def test_long_names_stay_distinct() -> None:
    base = "a" * 80
    assert job_name_for(base + "x") != job_name_for(base + "y")
    assert label_value(base + "x") != label_value(base + "y")
    assert len(label_value(base)) <= 63
    assert label_value("short-name") == "short-name"
