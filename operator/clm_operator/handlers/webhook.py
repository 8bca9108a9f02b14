"""The Alertmanager webhook: firing alerts become TrainingJobs (docs/architecture.md, "Triggers").

Served by the operator (aiohttp, started from a kopf startup handler) on CLM_WEBHOOK_PORT (default
8443, plain HTTP behind the Service; TLS is the ingress' or mesh's job) at POST /alertmanager. Every
setting comes from OperatorConfig (domain/config.py), parsed once by runner.py.

Authentication: ``Authorization: Bearer <token>``, the token read from the file CLM_WEBHOOK_TOKEN_FILE
(a mounted Secret; re-read on every request so a rotated Secret applies without a restart) or from
CLM_WEBHOOK_TOKEN (OperatorConfig.expected_webhook_token). With neither configured every request is
refused: an open endpoint that starts GPU jobs is never the default.

An alert is used when it is firing and labelled ``clm_model`` (plus ``namespace``, else
CLM_WEBHOOK_NAMESPACE; plus ``clm_trigger`` drift|performance|regime, else derived from ``alertname``).
A run is created from the Model's template with that trigger unless the Model's triggers disable it,
a performance alert carries ``live_sharpe`` (label or annotation) not below the Model's
``triggers.performance.minLiveSharpe``, or a run of that Model with that trigger is still running
(deduplicated).

Label values become API paths and label selectors, so each one used (``namespace``, ``clm_model``) must
be a DNS label (a Model's name: at most 50 characters); anything else answers 400 naming the label,
before any API call. The body is read in full up to MAX_BODY (1 MiB); a larger one answers 413.

Results (one per request in ``clm_webhook_requests_total{result}``, whatever happens): unauthorized
(401), too_large (413), malformed (400), error (500: the API failed; Alertmanager retries), accepted (a
run was created), deduplicated (all wanted runs were already running), ignored.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import kopf
from aiohttp import web
from clm_contract.model import validate_model_name
from clm_contract.training_job import DNS_LABEL

from clm_operator.domain import schedule as schedule_domain
from clm_operator.domain.effects import NORMAL, Event, EventReason, Subject
from clm_operator.domain.lifecycle import is_finished
from clm_operator.domain.model_decision import run_phase
from clm_operator.handlers.common import MODELS, TRAINING_JOBS, current, emit, runtime
from clm_operator.k8s import custom_path
from clm_operator.observability import metrics as m

log = logging.getLogger("clm_operator.webhook")

PATH = "/alertmanager"
TRIGGERS = ("drift", "performance", "regime")
MAX_BODY = 1024 * 1024


READ_CHUNK = 64 * 1024
NAMESPACE_MAX_LENGTH = 63
_DNS_LABEL = re.compile(DNS_LABEL)


class MalformedPayload(ValueError):
    pass


class PayloadTooLarge(ValueError):
    pass


def _checked_label(index: int, label: str, value: Any) -> str:
    """A label value that goes into an API path or selector: a DNS label, or MalformedPayload naming it."""
    text = value if isinstance(value, str) else ""
    try:
        if label == "clm_model":
            validate_model_name(text)
        elif not text or len(text) > NAMESPACE_MAX_LENGTH or not _DNS_LABEL.match(text):
            raise ValueError(f"must be a DNS label (lowercase letters, digits and '-', at most "
                             f"{NAMESPACE_MAX_LENGTH} characters)")
    except ValueError as error:
        raise MalformedPayload(f"alerts[{index}].labels.{label} {value!r} is not a valid name: "
                               f"{error}") from None
    return text


@dataclass(frozen=True)
class AlertRequest:
    namespace: str
    model: str
    trigger: str
    key: str  # identifies the alert episode: fingerprint and start time
    alertname: str
    summary: str
    live_sharpe: float | None = None  # label or annotation live_sharpe, checked against minLiveSharpe


def trigger_from(labels: Mapping[str, Any]) -> str | None:
    explicit = labels.get("clm_trigger")
    if explicit:
        return str(explicit) if explicit in TRIGGERS else None
    name = str(labels.get("alertname", "")).lower()
    if "drift" in name:
        return "drift"
    if "regime" in name:
        return "regime"
    if "perf" in name or "sharpe" in name:
        return "performance"
    return None


def parse_payload(payload: Any, default_namespace: str | None) -> tuple[list[AlertRequest], list[str]]:
    """(requests, reasons for alerts that were ignored). Raises MalformedPayload naming the field."""
    if not isinstance(payload, dict):
        raise MalformedPayload("the body must be a JSON object (Alertmanager webhook format, version 4)")
    alerts = payload.get("alerts")
    if not isinstance(alerts, list):
        raise MalformedPayload("field 'alerts' must be a list of alerts")
    requests: list[AlertRequest] = []
    ignored: list[str] = []
    for index, alert in enumerate(alerts):
        if not isinstance(alert, dict) or not isinstance(alert.get("labels", {}), dict):
            raise MalformedPayload(f"alerts[{index}] must be an object with a 'labels' object")
        labels: dict[str, Any] = alert.get("labels") or {}
        name = str(labels.get("alertname", f"alerts[{index}]"))
        if alert.get("status", payload.get("status")) != "firing":
            ignored.append(f"{name}: not firing")
            continue
        model = labels.get("clm_model")
        if not model:
            ignored.append(f"{name}: no clm_model label")
            continue
        model = _checked_label(index, "clm_model", model)
        namespace = labels.get("namespace") or default_namespace
        if not namespace:
            ignored.append(f"{name}: no namespace label and CLM_WEBHOOK_NAMESPACE is not set")
            continue
        namespace = _checked_label(index, "namespace", namespace)
        trigger = trigger_from(labels)
        if trigger is None:
            ignored.append(f"{name}: set label clm_trigger to one of {', '.join(TRIGGERS)}")
            continue
        key = f"{alert.get('fingerprint', '')}@{alert.get('startsAt', '')}"
        annotations = alert.get("annotations") or {}
        summary = str(annotations.get("summary", ""))[:512]
        requests.append(AlertRequest(namespace, model, trigger, key, name, summary,
                                     _float(labels.get("live_sharpe", annotations.get("live_sharpe")))))
    return requests, ignored


def _float(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


async def read_body(request: web.Request) -> bytes:
    """The whole body, up to MAX_BODY (``content.read(n)`` returns after the first chunk, so read on)."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise PayloadTooLarge(f"body of {request.content_length} bytes is larger than {MAX_BODY} bytes")
    body = bytearray()
    async for chunk in request.content.iter_chunked(READ_CHUNK):
        body += chunk
        if len(body) > MAX_BODY:
            raise PayloadTooLarge(f"body larger than {MAX_BODY} bytes")
    return bytes(body)


def authorized(header: str | None, token: str | None) -> bool:
    if not token or not header or not header.startswith("Bearer "):
        return False
    return hmac.compare_digest(header[len("Bearer "):].strip().encode(), token.encode())


Processor = Callable[[list[AlertRequest]], Awaitable[dict[str, list[str]]]]


def make_app(process: Processor, token: Callable[[], str | None],
             default_namespace: str | None = None) -> web.Application:
    async def alertmanager(request: web.Request) -> web.Response:
        if not authorized(request.headers.get("Authorization"), token()):
            m.WEBHOOK_REQUESTS.labels(result="unauthorized").inc()
            return web.json_response({"error": "unauthorized: send 'Authorization: Bearer <token>' with the "
                                               "token of the webhook Secret"}, status=401)
        try:
            raw = await read_body(request)
            requests, ignored = parse_payload(json.loads(raw or b"null"), default_namespace)
        except PayloadTooLarge as error:
            m.WEBHOOK_REQUESTS.labels(result="too_large").inc()
            return web.json_response({"error": str(error)}, status=413)
        except (ValueError, UnicodeDecodeError) as error:  # MalformedPayload and JSONDecodeError
            m.WEBHOOK_REQUESTS.labels(result="malformed").inc()
            return web.json_response({"error": f"malformed Alertmanager payload: {error}"}, status=400)
        try:
            outcome = await process(requests)
        except Exception as error:  # counted and answered; Alertmanager retries a 5xx
            log.error("webhook: processing the alerts failed: %s: %s", type(error).__name__, error)
            m.WEBHOOK_REQUESTS.labels(result="error").inc()
            return web.json_response({"error": f"the alerts could not be processed ({type(error).__name__}); "
                                               "Alertmanager will retry"}, status=500)
        outcome["ignored"] = ignored + outcome.get("ignored", [])
        if outcome.get("accepted"):
            result = "accepted"
        elif outcome.get("deduplicated"):
            result = "deduplicated"
        else:
            result = "ignored"
        m.WEBHOOK_REQUESTS.labels(result=result).inc()
        return web.json_response({"result": result, **outcome})

    app = web.Application(client_max_size=MAX_BODY + 1)
    app.router.add_post(PATH, alertmanager)
    return app


# ---------------------------------------------------------------------------------------------------
# Turning alerts into TrainingJobs


_locks: dict[tuple[str, str, str], asyncio.Lock] = {}


def _running(tj: dict[str, Any]) -> bool:
    return not is_finished(run_phase(tj)) and not tj["metadata"].get("deletionTimestamp")


async def process_alerts(requests: list[AlertRequest]) -> dict[str, list[str]]:
    kube, _ = runtime()
    outcome: dict[str, list[str]] = {"accepted": [], "deduplicated": [], "ignored": []}
    for req in requests:
        key = (req.namespace, req.model, req.trigger)
        lock = _locks.setdefault(key, asyncio.Lock())
        async with lock:
            model = await kube.get(custom_path(MODELS, req.namespace, req.model))
            if model is None:
                outcome["ignored"].append(f"{req.alertname}: Model {req.namespace}/{req.model} not found")
                continue
            triggers = (model.get("spec") or {}).get("triggers") or {}
            if (triggers.get(req.trigger) or {}).get("enabled", True) is False:
                outcome["ignored"].append(f"{req.alertname}: spec.triggers.{req.trigger}.enabled is false")
                continue
            threshold = (triggers.get("performance") or {}).get("minLiveSharpe", 0.5)
            if req.trigger == "performance" and req.live_sharpe is not None and req.live_sharpe >= threshold:
                outcome["ignored"].append(f"{req.alertname}: live Sharpe {req.live_sharpe:g} is not below "
                                          f"spec.triggers.performance.minLiveSharpe ({threshold:g})")
                continue
            selector = (f"{schedule_domain.MODEL_LABEL}={req.model},"
                        f"{schedule_domain.TRIGGER_LABEL}={req.trigger}")
            running = [tj["metadata"]["name"]
                       for tj in await kube.list(custom_path(TRAINING_JOBS, req.namespace), selector)
                       if _running(tj)]
            if running:
                outcome["deduplicated"].append(f"{req.namespace}/{running[0]}")
                continue
            name = schedule_domain.triggered_run_name(req.model, req.trigger, req.key)
            note = f"alert {req.alertname}" + (f": {req.summary}" if req.summary else "")
            # Every version the Model already trained counts as a trial for the new one's DSR.
            runs = [tj for tj in await kube.list(custom_path(TRAINING_JOBS, req.namespace))
                    if (tj.get("spec") or {}).get("modelName") == req.model]
            prior = schedule_domain.trained_versions([run_phase(tj) for tj in runs])
            body = schedule_domain.training_job_for(model, name, req.trigger, "alertmanager", note=note,
                                                    prior_trials=prior)
            _, created = await kube.create_or_get(custom_path(TRAINING_JOBS, req.namespace), body)
            if not created:
                outcome["deduplicated"].append(f"{req.namespace}/{name}")
                continue
            outcome["accepted"].append(f"{req.namespace}/{name}")
            model.setdefault("apiVersion", body["apiVersion"])
            model.setdefault("kind", "Model")
            await emit(model, Event(Subject.MODEL, NORMAL, EventReason.TRAINING_JOB_CREATED,
                                    f"{req.trigger} alert {req.alertname} started run {name}"))
    return outcome


# ---------------------------------------------------------------------------------------------------
# kopf wiring


_runner: web.AppRunner | None = None


async def start_webhook(logger: kopf.Logger, **_: Any) -> None:
    """kopf startup handler (registered by handlers/__init__.py): serve the webhook beside the reconciles."""
    global _runner
    state = current()
    config = state.config
    port = config.listen_port(state.webhook_port_flag)
    if port == 0:
        logger.info("Alertmanager webhook disabled (port 0)")
        return
    if config.expected_webhook_token() is None:
        logger.warning("webhook: neither CLM_WEBHOOK_TOKEN_FILE nor CLM_WEBHOOK_TOKEN is set: every request "
                       "gets 401")
    app = make_app(process_alerts, token=config.expected_webhook_token,
                   default_namespace=config.webhook_namespace)
    _runner = web.AppRunner(app, access_log=None)
    await _runner.setup()
    site = web.TCPSite(_runner, config.webhook_address(), port)
    try:
        await site.start()
    except OSError as error:
        # The reconciles matter more than the webhook: keep the operator running, say so loudly.
        logger.error(f"Alertmanager webhook NOT serving: cannot listen on port {port} ({error}); "
                     "set --webhook-port or CLM_WEBHOOK_PORT to a free port")
        await _runner.cleanup()
        _runner = None
        return
    logger.info(f"Alertmanager webhook listening on {config.webhook_address()}:{port}{PATH}")


async def stop_webhook(**_: Any) -> None:
    global _runner
    if _runner is not None:
        await _runner.cleanup()
        _runner = None
