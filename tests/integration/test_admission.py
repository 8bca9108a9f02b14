"""Admission in a real API server (kube-apiserver 1.35 of the sandbox): the CEL rules of the generated
CRDs refuse a bad spec at `kubectl apply`, naming the field and the fix, and pydantic (the operator's and
the trainer's validation, clm_contract) refuses the same specs; good specs and every example pass both.
The chart's aggregated roles give users of the built-in `view` / `edit` roles what they promise.

One sandbox for the module, without operator or S3: nothing here needs a reconcile.
"""

from __future__ import annotations

import copy
import json
import random
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import yaml
from clm_contract.model import ModelSpec
from clm_contract.training_job import TrainingJobSpec
from pydantic import BaseModel, ValidationError

from tests.chart.helm import render
from tests.support.cluster import Kubectl, cluster_fixture, namespace_fixture, wait_for

REPO = Path(__file__).resolve().parents[2]
JSON = dict[str, Any]

env = cluster_fixture(operator=False, s3=False)
kubectl = namespace_fixture("adm")

SPEC: JSON = {"modelName": "btc", "algorithm": "xgboost",
              "dataset": {"uri": "builtin:synthetic?kind=planted&seed=7", "symbol": "BTCUSDT"}}
TEMPLATE: JSON = {key: value for key, value in SPEC.items() if key != "modelName"}


def training_job(name: str, **change: Any) -> JSON:
    spec = copy.deepcopy(SPEC)
    spec.update(change)
    return {"apiVersion": "clm.dev/v1alpha1", "kind": "TrainingJob", "metadata": {"name": name}, "spec": spec}


def model(name: str, schedule: str | None = None, **template_change: Any) -> JSON:
    spec: JSON = {"template": {**copy.deepcopy(TEMPLATE), **template_change}}
    if schedule is not None:
        spec["schedule"] = schedule
    return {"apiVersion": "clm.dev/v1alpha1", "kind": "Model", "metadata": {"name": name}, "spec": spec}


def pydantic_refusal(document: JSON) -> str | None:
    """What pydantic says of the document's spec: None when it is valid, else the errors."""
    schema: type[BaseModel] = TrainingJobSpec if document["kind"] == "TrainingJob" else ModelSpec
    try:
        schema.model_validate(document["spec"])
    except ValidationError as exc:
        return str(exc)
    return None


# (id, document, the field the API server names, a word of the fix)
REFUSED: list[tuple[str, JSON, str, str]] = [
    ("embargo-below-horizon", training_job("bad", target={"horizonBars": 4}, evaluation={"embargoBars": 3}),
     "spec.evaluation.embargoBars", "at least target.horizonBars"),
    ("embargo-below-default-horizon", training_job("bad", evaluation={"embargoBars": 23}),
     "spec.evaluation.embargoBars", "at least target.horizonBars"),
    ("lightgbm-key-for-xgboost", training_job("bad", hyperparameters={"numLeaves": 31}),
     "spec.hyperparameters.numLeaves", "hyperparameter of lightgbm only"),
    ("ppo-key-for-nhits", training_job("bad", algorithm="nhits", hyperparameters={"netArch": [64]}),
     "spec.hyperparameters.netArch", "hyperparameter of ppo only"),
    ("deep-key-for-ppo", training_job("bad", algorithm="ppo", hyperparameters={"maxEpochs": 3}),
     "spec.hyperparameters.maxEpochs", "hyperparameter of nhits, patchtst only"),
    ("key-of-no-algorithm", training_job("bad", hyperparameters={"maxDepht": 3}),
     "spec.hyperparameters.maxDepht", "unknown field"),
    ("template-key-of-another-algorithm", model("bad", hyperparameters={"numLeaves": 31}),
     "spec.template.hyperparameters.numLeaves", "lightgbm only"),
    ("cron-minute-61", model("bad", "61 * * * *"), "spec.schedule", "5 fields"),
    ("cron-six-fields", model("bad", "0 0 3 * * 1"), "spec.schedule", "5 fields"),
    ("cron-unknown-macro", model("bad", "@reboot"), "spec.schedule", "@daily"),
    ("cron-last-day-extension", model("bad", "0 0 L * *"), "spec.schedule", "5 fields"),
    ("cron-step-zero", model("bad", "*/0 * * * *"), "spec.schedule", "5 fields"),
    ("cron-weekday-8", model("bad", "0 0 * * 8"), "spec.schedule", "5 fields"),
    ("cpu-dot", training_job("bad", resources={"cpu": "."}), "spec.resources.cpu", "Kubernetes quantity"),
    ("cpu-negative", training_job("bad", resources={"cpu": "-1"}), "spec.resources.cpu", "above 0"),
    ("cpu-1e999", training_job("bad", resources={"cpu": "1e999"}), "spec.resources.cpu", "at most 4096"),
    ("cpu-zero", training_job("bad", resources={"cpu": "0"}), "spec.resources.cpu", "above 0"),
    ("memory-1.2.3", training_job("bad", resources={"memory": "1.2.3"}), "spec.resources.memory",
     "Kubernetes quantity"),
    ("memory-millibytes", training_job("bad", resources={"memory": "100m"}), "spec.resources.memory",
     "whole bytes"),
    ("template-cpu", model("bad", resources={"cpu": "-1"}), "spec.template.resources.cpu", "above 0"),
    ("note-rtl-override", training_job("bad", trigger={"note": "approved \u202egnp.exe"}),
     "spec.trigger.note", "bidirectional"),
    ("note-nul", training_job("bad", trigger={"note": "a\x00b"}), "spec.trigger.note", "control characters"),
    ("note-escape-sequence", training_job("bad", trigger={"note": "\x1b[31mred"}), "spec.trigger.note",
     "control characters"),
    ("requested-by-newline", training_job("bad", trigger={"requestedBy": "jane\nadmin"}),
     "spec.trigger.requestedBy", "nor tab or newline"),
    ("requested-by-isolate", training_job("bad", trigger={"requestedBy": "jane\u2066"}),
     "spec.trigger.requestedBy", "bidirectional"),
    ("start-and-lookback", training_job("bad", dataset={**SPEC["dataset"], "start": "2024-01-01T00:00:00Z",
                                                        "lookbackDays": 30}),
     "spec.dataset.lookbackDays", "not both"),
    ("start-after-end", training_job("bad", dataset={**SPEC["dataset"], "start": "2024-02-01T00:00:00Z",
                                                     "end": "2024-01-01T00:00:00Z"}),
     "spec.dataset.start", "before end"),
]

ACCEPTED: list[tuple[str, JSON]] = [
    ("plain", training_job("good")),
    ("embargo-at-horizon", training_job("good", target={"horizonBars": 4}, evaluation={"embargoBars": 4})),
    ("lightgbm-keys", training_job("good", algorithm="lightgbm",
                                   hyperparameters={"numLeaves": 31, "maxDepth": -1, "nEstimators": 50})),
    ("ppo-keys", training_job("good", algorithm="ppo", hyperparameters={"netArch": [32, 32], "gamma": 0.9,
                                                                         "budget": "cpu"})),
    ("quantities", training_job("good", resources={"cpu": "500m", "memory": "1.5Gi"})),
    ("emoji-and-lines", training_job("good", trigger={
        "reason": "manual", "requestedBy": "jané 😀",
        "note": "retrain 🚀 👨\u200d👩\u200d👧\nafter the halving\t✓"})),
    ("cron-classic", model("good", "0 3 * * 1")),
    ("cron-names-ranges-steps", model("good", "*/15 9-17 * JAN-MAR mon-fri")),
    ("cron-lists", model("good", "0 0 1,15 * *")),
    ("cron-macro", model("good", "@daily")),
    ("no-schedule", model("good")),
]


@pytest.mark.parametrize(("document", "field", "fix"), [case[1:] for case in REFUSED],
                         ids=[case[0] for case in REFUSED])
def test_a_bad_spec_is_refused_at_apply_naming_the_field(kubectl: Kubectl, document: JSON, field: str,
                                                         fix: str) -> None:
    result = kubectl.apply(document)
    assert result.returncode != 0, result.stdout
    assert f"{field}:" in result.stderr or f'"{field}"' in result.stderr, result.stderr
    assert fix in result.stderr, result.stderr
    assert kubectl.get(f"{document['kind'].lower()}s", document["metadata"]["name"]) is None
    assert pydantic_refusal(document) is not None, "the operator and the trainer must refuse it too"


@pytest.mark.parametrize("document", [case[1] for case in ACCEPTED], ids=[case[0] for case in ACCEPTED])
def test_a_good_spec_is_accepted_by_both(kubectl: Kubectl, document: JSON) -> None:
    assert pydantic_refusal(document) is None
    result = kubectl.apply(document)
    assert result.returncode == 0, result.stderr
    stored = kubectl.get(f"{document['kind'].lower()}s", document["metadata"]["name"])
    assert stored is not None and stored["spec"] == document["spec"]  # carried as written, emoji included
    kubectl("delete", document["kind"].lower(), document["metadata"]["name"], check=True)


def dry_run_verdicts(kubectl: Kubectl, documents: list[JSON]) -> dict[str, bool]:
    """name -> accepted, for many documents in one `kubectl apply --dry-run=server` of a List."""
    result = kubectl("apply", "--dry-run=server", "-f", "-", timeout=300,
                     input=json.dumps({"apiVersion": "v1", "kind": "List", "items": documents}))
    accepted = set(re.findall(r"\w+\.clm\.dev/([a-z0-9-]+) (?:created|configured)", result.stdout))
    names = [document["metadata"]["name"] for document in documents]
    verdicts = {name: name in accepted for name in names}
    refused = [name for name, ok in verdicts.items() if not ok]
    assert all(f'"{name}"' in result.stderr for name in refused), result.stderr[-2000:]
    return verdicts


def disagreements(kubectl: Kubectl, cases: Iterable[tuple[str, JSON]]) -> list[str]:
    named = {f"c{index}": (label, document) for index, (label, document) in enumerate(cases)}
    documents = [{**document, "metadata": {"name": name}} for name, (_, document) in named.items()]
    verdicts = dry_run_verdicts(kubectl, documents)
    found = []
    for name, (label, document) in named.items():
        python_accepts = pydantic_refusal(document) is None
        if verdicts[name] != python_accepts:
            found.append(f"{label}: API server {'accepts' if verdicts[name] else 'refuses'}, pydantic "
                         f"{'accepts' if python_accepts else 'refuses'}")
    return found


def test_api_server_and_pydantic_agree_on_quantities(kubectl: Kubectl) -> None:
    generator = random.Random(14)
    alphabet = "0123456789....++--eeEEmkMGTPKinu"
    samples = {"1", "0.5", ".5", "5.", "+1", "1e3", "1E3", "1E", "1Ei", "1Ki", "1k", "1K", "1m", "1n", "1u",
               "0.0001", "1e-3", "1e+3", "1e", "1.", "+.5", "-.5", "1mi", "1.5Ki", "4096", "4097", "4.096k",
               "1e999", "64Ti", "65Ti", "0", "0.0", "1000m", "2.0", "1.50", "1.5e3", "12345678901234567890"}
    while len(samples) < 150:
        samples.add("".join(generator.choice(alphabet) for _ in range(generator.randint(1, 5))))
    cases = [(f"{field}={value!r}", training_job("q", resources={field: value}))
             for value in sorted(samples) for field in ("cpu", "memory")]
    assert disagreements(kubectl, cases) == []


def test_api_server_and_pydantic_agree_on_free_text(kubectl: Kubectl) -> None:
    codes = [*range(0x00, 0xA1), *range(0x2000, 0x2070), 0x061C, 0x00AD, 0xFEFF, 0x1F600]
    cases = [(f"{field} U+{code:04X}", training_job("t", trigger={field: f"a{chr(code)}b"}))
             for code in codes for field in ("note", "requestedBy")]
    assert disagreements(kubectl, cases) == []


def test_api_server_and_pydantic_agree_on_schedules(kubectl: Kubectl) -> None:
    tokens = ["*", "?", "0", "7", "23", "31", "59", "1-5", "*/2", "1-5/2", "mon", "JAN", "mon-fri", "0-7",
              "1,2", "L", "60", "*/0", "3/4", "1#2"]
    generator = random.Random(14)
    schedules = {" ".join(generator.choice(tokens) for _ in range(5)) for _ in range(150)}
    schedules |= {"@daily", "@hourly", "@weekly", "@monthly", "@yearly", "@annually", "@midnight", "@reboot",
                  "@every 5m", "0 0 * * * *", "* * * *", " 0 3 * * 1 ", "0 0 31 2 *"}
    cases = [(repr(schedule), model("m", schedule)) for schedule in sorted(schedules)]
    assert disagreements(kubectl, cases) == []


def test_every_example_passes_the_api_server(kubectl: Kubectl) -> None:
    examples = sorted((REPO / "examples").glob("*.yaml"))
    assert examples
    for path in examples:
        documents = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
        for namespace in {doc["metadata"].get("namespace") for doc in documents} - {None, "default"}:
            kubectl("create", "namespace", namespace)  # already there (another example): harmless
        # As a user applies it: the namespaces its header names, not the test's.
        result = kubectl.cluster.kubectl("apply", "--dry-run=server", "-f", str(path))
        assert result.returncode == 0, f"{path.name}: {result.stderr}"
        for document in documents:
            if document.get("apiVersion") == "clm.dev/v1alpha1":
                assert pydantic_refusal(document) is None, path.name


def test_namespace_view_and_edit_roles_reach_the_kinds(kubectl: Kubectl) -> None:
    roles = [obj for obj in render() if obj["kind"] == "ClusterRole"
             and obj["metadata"]["name"] in ("clm-viewer", "clm-editor")]
    assert len(roles) == 2
    for role in roles:
        kubectl.apply(role, check=True)

    def aggregated() -> bool:
        for builtin in ("view", "edit", "admin"):
            role = json.loads(kubectl("get", "clusterrole", builtin, "-o", "json", check=True).stdout)
            if not any("clm.dev" in rule.get("apiGroups", []) for rule in role.get("rules") or []):
                return False
        return True

    wait_for(aggregated, timeout=30, interval=0.5, message="clm.dev rules aggregated into view, edit, admin")
    for user, builtin in (("jane", "edit"), ("bob", "view")):
        kubectl("create", "rolebinding", f"{user}-{builtin}", f"--clusterrole={builtin}", f"--user={user}",
                check=True)

    def can(user: str, verb: str, resource: str, subresource: str | None = None) -> bool:
        args = ["auth", "can-i", verb, resource, f"--as={user}"]
        if subresource:
            args.append(f"--subresource={subresource}")
        answer = kubectl(*args).stdout.strip()
        assert answer in ("yes", "no"), answer
        return answer == "yes"

    for resource in ("trainingjobs.clm.dev", "modelversions.clm.dev", "models.clm.dev"):
        for verb in ("get", "list", "watch"):
            assert can("bob", verb, resource) and can("jane", verb, resource), (verb, resource)
        for verb in ("create", "update", "patch", "delete"):
            assert not can("bob", verb, resource), (verb, resource)
        for verb in ("update", "patch"):
            assert not can("jane", verb, resource, "status"), f"jane must not write {resource} status"
            assert not can("bob", verb, resource, "status")
    for resource in ("trainingjobs.clm.dev", "models.clm.dev"):
        for verb in ("create", "update", "patch", "delete"):
            assert can("jane", verb, resource), (verb, resource)
    assert can("jane", "delete", "modelversions.clm.dev")
    assert not can("jane", "create", "modelversions.clm.dev"), "versions are minted by the operator only"

    # The real requests, not only the answers of the authorizer.
    run = json.dumps(training_job("janes-run"))
    refused = kubectl("--as=bob", "create", "-f", "-", input=run)
    assert refused.returncode != 0 and "forbidden" in refused.stderr.lower(), refused.stderr
    kubectl("--as=jane", "create", "-f", "-", input=run, check=True)
    listed = kubectl("--as=bob", "get", "trainingjobs", "-o", "name", check=True).stdout.split()
    assert listed == ["trainingjob.clm.dev/janes-run"]
    status = kubectl("--as=jane", "patch", "trainingjob", "janes-run", "--subresource=status", "--type=merge",
                     "-p", '{"status": {"phase": "Succeeded"}}')
    assert status.returncode != 0 and "forbidden" in status.stderr.lower(), status.stderr
    assert (kubectl.get("trainingjobs", "janes-run") or {}).get("status", {}).get("phase") is None


def test_kubectl_explain_describes_the_fields(kubectl: Kubectl) -> None:
    """The descriptions of the models reach `kubectl explain` through the API server's OpenAPI."""
    dataset = kubectl("explain", "trainingjobs.spec.dataset", check=True).stdout
    for field, words in (("symbol", "instrument"), ("timeframe", "bar length"), ("start", "first bar"),
                         ("end", "bars before"), ("lookbackDays", "last N days")):
        assert re.search(rf"^\s+{field}\s", dataset, re.MULTILINE), (field, dataset)
        assert words in dataset, (field, dataset)
    folds = kubectl("explain", "trainingjobs.spec.evaluation.folds", check=True).stdout
    assert "walk-forward folds" in folds
    schedule = kubectl("explain", "models.spec.schedule", check=True).stdout
    assert "cron" in schedule
