"""The webhook's HTTP edge on a real aiohttp server (loopback): the whole body is read up to 1 MiB (413
above), hostile label values answer 400 naming the label before any API call, a failure of the API
answers 500, and every request is counted."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from clm_operator.handlers.webhook import MAX_BODY, AlertRequest, make_app
from clm_operator.observability import metrics as m

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

Post = Callable[..., Awaitable[tuple[int, dict[str, Any]]]]


def counted(result: str) -> float:
    return float(m.WEBHOOK_REQUESTS.labels(result=result)._value.get())


def alert(index: int, **labels: str) -> dict[str, Any]:
    return {"status": "firing", "fingerprint": f"f{index:05d}", "startsAt": "2026-03-02T11:00:00Z",
            "labels": {"alertname": "FeatureDrift", "clm_model": "btc", "namespace": "trading", **labels},
            "annotations": {"summary": "population stability index above 0.25 on feature rsi_14 " * 2}}


class Recorder:
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[list[AlertRequest]] = []
        self.fail = fail

    async def __call__(self, requests: list[AlertRequest]) -> dict[str, list[str]]:
        self.calls.append(requests)
        if self.fail:
            raise RuntimeError("the API server answered 503")
        return {"accepted": [f"{r.namespace}/{r.model}" for r in requests[:1]], "deduplicated": [],
                "ignored": []}


@pytest.fixture
async def server() -> AsyncIterator[tuple[Recorder, Post, Recorder]]:
    working, failing = Recorder(), Recorder(fail=True)
    current: dict[str, Recorder] = {"p": working}

    async def process(requests: list[AlertRequest]) -> dict[str, list[str]]:
        return await current["p"](requests)

    test_server = TestServer(make_app(process, token=lambda: TOKEN), host="127.0.0.1")
    await test_server.start_server()
    async with aiohttp.ClientSession() as session:
        async def post(body: bytes, *, failing_api: bool = False, chunked: bool = False) -> tuple[int, Any]:
            current["p"] = failing if failing_api else working
            data: Any = body
            if chunked:  # no Content-Length: the size is found only by reading
                async def stream() -> AsyncIterator[bytes]:
                    for start in range(0, len(body), 10_000):
                        yield body[start:start + 10_000]
                data = stream()
            async with session.post(test_server.make_url("/alertmanager"), data=data, headers=AUTH) as reply:
                return reply.status, await reply.json()

        yield working, post, failing
    await test_server.close()


async def test_a_thousand_alert_body_is_read_whole_and_processed(
        server: tuple[Recorder, Post, Recorder]) -> None:
    working, post, _ = server
    body = json.dumps({"status": "firing", "alerts": [alert(i) for i in range(1000)]}).encode()
    assert 150_000 < len(body) < MAX_BODY
    before = counted("accepted")
    for chunked in (False, True):
        status, answer = await post(body, chunked=chunked)
        assert status == 200 and answer["result"] == "accepted", answer
        assert len(working.calls[-1]) == 1000
    assert counted("accepted") == before + 2


async def test_a_body_over_one_mib_answers_413(server: tuple[Recorder, Post, Recorder]) -> None:
    working, post, _ = server
    alerts = [alert(i) for i in range(6000)]
    body = json.dumps({"status": "firing", "alerts": alerts}).encode()
    assert len(body) > MAX_BODY
    before = counted("too_large")
    for chunked in (False, True):
        status, answer = await post(body, chunked=chunked)
        assert status == 413 and str(MAX_BODY) in answer["error"]
    assert counted("too_large") == before + 2 and working.calls == []


@pytest.mark.parametrize(("labels", "named"), [
    ({"namespace": "other/../default"}, "labels.namespace"),
    ({"clm_model": "whm/../whm"}, "labels.clm_model"),
    ({"clm_model": "BTC"}, "labels.clm_model"),
    ({"clm_model": "btc,clm.dev/trigger=drift"}, "labels.clm_model"),
    ({"namespace": "a" * 64}, "labels.namespace"),
])
async def test_hostile_label_values_answer_400_naming_the_label_before_any_api_call(
        server: tuple[Recorder, Post, Recorder], labels: dict[str, str], named: str) -> None:
    working, post, _ = server
    before = counted("malformed")
    body = json.dumps({"alerts": [alert(0), alert(1, **labels)]}).encode()
    status, answer = await post(body)
    assert status == 400 and f"alerts[1].{named}" in answer["error"], answer
    assert counted("malformed") == before + 1 and working.calls == []


async def test_an_api_failure_answers_500_and_is_counted(server: tuple[Recorder, Post, Recorder]) -> None:
    _, post, failing = server
    before = counted("error")
    status, answer = await post(json.dumps({"alerts": [alert(0)]}).encode(), failing_api=True)
    assert status == 500 and "Traceback" not in json.dumps(answer) and "retry" in answer["error"]
    assert counted("error") == before + 1 and len(failing.calls) == 1
