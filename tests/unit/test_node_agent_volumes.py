"""The node agent's volumes (planning and AtomicWriter-style files) and its mini-scheduler."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest
from clm_sandbox.node.env import NodeContext
from clm_sandbox.node.scheduling import (
    pod_requests,
    tolerates,
    unschedulable_message,
    unschedulable_reasons,
)
from clm_sandbox.node.volumes import (
    VolumeError,
    VolumeFile,
    current_files,
    effective_mode,
    plan_mounts,
    plan_volume,
    token_refresh_at,
    write_files,
)

CONTEXT = NodeContext("node-a")
OBJECTS = {
    ("Secret", "team", "hook"): {"token": b"t0k", "other": b"x"},
    ("ConfigMap", "team", "kube-root-ca.crt"): {"ca.crt": b"-----BEGIN CERTIFICATE-----"},
}
POD: dict[str, Any] = {
    "metadata": {"name": "op-1", "namespace": "team", "uid": "u", "labels": {"b": "2", "a": "1"}},
    "spec": {"containers": [{"name": "main"}]},
}
issued: list[tuple[str | None, int]] = []


def lookup(kind: str, namespace: str, name: str) -> dict[str, bytes] | None:
    return OBJECTS.get((kind, namespace, name))


def tokens(audience: str | None, seconds: int) -> tuple[str, float]:
    issued.append((audience, seconds))
    return "jwt", 1000.0 + seconds


def plan(volume: dict[str, Any]) -> Any:
    return plan_volume(POD, volume, lookup=lookup, tokens=tokens, context=CONTEXT, now=1000.0)


def files_of(volume: dict[str, Any]) -> dict[str, tuple[bytes, int]]:
    return {f.path: (f.data, f.mode) for f in plan(volume).files}


def test_secret_volume_all_keys_or_items_with_modes() -> None:
    assert files_of({"name": "v", "secret": {"secretName": "hook"}}) == {
        "other": (b"x", 0o644),
        "token": (b"t0k", 0o644),
    }
    chosen = files_of(
        {
            "name": "v",
            "secret": {
                "secretName": "hook",
                "defaultMode": 0o440,
                "items": [{"key": "token", "path": "dir/t"}, {"key": "other", "path": "o", "mode": 0o400}],
            },
        }
    )
    assert chosen == {"dir/t": (b"t0k", 0o440), "o": (b"x", 0o400)}
    assert plan({"name": "v", "secret": {"secretName": "hook"}}).read_only


def test_missing_objects_fail_the_mount_unless_optional() -> None:
    with pytest.raises(VolumeError, match='secret "nope" not found'):
        plan({"name": "v", "secret": {"secretName": "nope"}})
    assert plan({"name": "v", "secret": {"secretName": "nope", "optional": True}}).files == ()
    with pytest.raises(VolumeError, match="has no key 'k'"):
        plan({"name": "v", "configMap": {"name": "kube-root-ca.crt", "items": [{"key": "k", "path": "k"}]}})
    with pytest.raises(VolumeError, match="unsupported volume type"):
        plan({"name": "v", "persistentVolumeClaim": {"claimName": "data"}})
    with pytest.raises(VolumeError, match="may not contain"):
        plan(
            {"name": "v", "secret": {"secretName": "hook", "items": [{"key": "token", "path": "../escape"}]}}
        )


def test_the_service_account_projection_as_admission_injects_it() -> None:
    issued.clear()
    content = plan(
        {
            "name": "kube-api-access-x",
            "projected": {
                "defaultMode": 420,
                "sources": [
                    {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                    {
                        "configMap": {
                            "name": "kube-root-ca.crt",
                            "items": [{"key": "ca.crt", "path": "ca.crt"}],
                        }
                    },
                    {
                        "downwardAPI": {
                            "items": [
                                {
                                    "path": "namespace",
                                    "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"},
                                }
                            ]
                        }
                    },
                ],
            },
        }
    )
    assert {f.path: f.data for f in content.files} == {
        "token": b"jwt",
        "ca.crt": b"-----BEGIN CERTIFICATE-----",
        "namespace": b"team",
    }
    assert issued == [(None, 3607)]
    assert content.refresh_at == pytest.approx(1000.0 + 0.8 * 3607)


def test_downward_api_labels_file() -> None:
    files = files_of(
        {
            "name": "info",
            "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]},
        }
    )
    assert files["labels"][0] == b'a="1"\nb="2"\n'


def test_token_refresh_at_80_percent_capped_at_a_day() -> None:
    assert token_refresh_at(0.0, 1000.0) == 800.0
    assert token_refresh_at(0.0, 365 * 86400.0) == 86400.0


def test_fs_group_makes_files_group_readable() -> None:
    assert effective_mode(0o400, None, True) == 0o400
    assert effective_mode(0o400, 10001, True) == 0o440
    assert effective_mode(0o600, 10001, False) == 0o660


def test_write_files_swaps_content_atomically_and_drops_removed_keys(tmp_path: Path) -> None:
    target = tmp_path / "vol"
    assert write_files(
        target, (VolumeFile("token", b"one", 0o600), VolumeFile("dir/ca", b"ca", 0o644)), fs_group=None
    )
    assert (target / "token").read_bytes() == b"one" and (target / "token").is_symlink()
    assert (target / "dir" / "ca").read_bytes() == b"ca"
    assert stat.S_IMODE(os.stat(target / "token").st_mode) == 0o600
    first = os.readlink(target / "..data")
    assert not write_files(
        target, (VolumeFile("token", b"one", 0o600), VolumeFile("dir/ca", b"ca", 0o644)), fs_group=None
    )  # unchanged: not rewritten
    assert write_files(target, (VolumeFile("token", b"two", 0o600),), fs_group=None)
    assert os.readlink(target / "..data") != first
    assert (target / "token").read_bytes() == b"two" and not (target / "dir").exists()
    assert current_files(target) == {"token": (b"two", 0o600)}
    assert sorted(
        p.name for p in target.iterdir() if p.name.startswith("..") and p.is_dir() and not p.is_symlink()
    ) == [os.readlink(target / "..data")]  # the old generation is gone


def test_mounts_with_subpaths_read_only_volumes_and_the_termination_log() -> None:
    container = {
        "name": "main",
        "terminationMessagePath": "/dev/termination-log",
        "volumeMounts": [
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "tok", "mountPath": "/etc/clm/webhook"},
            {"name": "tmp", "mountPath": "/var/log/app", "subPathExpr": "$(POD)/logs"},
            {"name": "tmp", "mountPath": "/tmp/cache/x", "subPath": "cache", "readOnly": True},
        ],
    }
    mounts = plan_mounts(
        container,
        {"tmp": "/pods/p/volumes/tmp", "tok": "/pods/p/volumes/tok"},
        {"tok"},
        {"POD": "op-1"},
        "/pods/p/runs/main-0/termination-log",
    )
    by_target = {m.target: m for m in mounts}
    assert by_target["/tmp"].source == "/pods/p/volumes/tmp" and not by_target["/tmp"].read_only
    assert by_target["/etc/clm/webhook"].read_only
    assert (
        by_target["/var/log/app"].source == "/pods/p/volumes/tmp/op-1/logs"
        and by_target["/var/log/app"].create_source
    )
    assert by_target["/tmp/cache/x"].read_only
    assert by_target["/dev/termination-log"].source.endswith("termination-log")
    assert [m.target for m in mounts].index("/tmp") < [m.target for m in mounts].index("/tmp/cache/x")
    with pytest.raises(VolumeError, match='no volume named "gone"'):
        plan_mounts({"volumeMounts": [{"name": "gone", "mountPath": "/x"}]}, {}, set(), {}, "/t")


NODE: dict[str, Any] = {
    "metadata": {"name": "node-a", "labels": {"kubernetes.io/os": "linux", "zone": "a"}},
    "spec": {},
    "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "3", "nvidia.com/gpu": "0"}},
}


def requesting(cpu: str = "1", memory: str = "1Gi", gpu: int = 0, **spec: Any) -> dict[str, Any]:
    resources: dict[str, Any] = {"requests": {"cpu": cpu, "memory": memory}}
    if gpu:
        resources["requests"]["nvidia.com/gpu"] = str(gpu)
    return {
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "resources": resources}], **spec},
    }


def test_requests_count_init_containers_as_the_scheduler_does() -> None:
    pod = requesting("500m", "1Gi", initContainers=[{"name": "i", "resources": {"requests": {"cpu": "2"}}}])
    requests = pod_requests(pod)
    assert requests["cpu"] == 2 and requests["memory"] == 1024**3


def test_fit_by_resources_pods_selector_and_taints() -> None:
    assert unschedulable_reasons(requesting("2"), NODE, [requesting("2")]) == []
    assert unschedulable_reasons(requesting("2"), NODE, [requesting("3")]) == ["Insufficient cpu"]
    assert unschedulable_reasons(requesting(gpu=1), NODE, []) == ["Insufficient nvidia.com/gpu"]
    assert unschedulable_reasons(requesting("0"), NODE, [requesting("0")] * 3) == ["Too many pods"]
    assert unschedulable_reasons(requesting(nodeSelector={"zone": "b"}), NODE, []) == [
        "node(s) didn't match Pod's node affinity/selector"
    ]
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "c"]}]}
                ]
            }
        }
    }
    assert unschedulable_reasons(requesting(affinity=affinity), NODE, []) == []
    tainted = {**NODE, "spec": {"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}}
    assert unschedulable_reasons(requesting(), tainted, []) == [
        "node(s) had untolerated taint {dedicated: gpu}"
    ]
    tolerating = requesting(
        tolerations=[{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]
    )
    assert unschedulable_reasons(tolerating, tainted, []) == []
    assert unschedulable_message(["Insufficient cpu", "Insufficient nvidia.com/gpu"]) == (
        "0/1 nodes are available: 1 Insufficient cpu, 1 Insufficient nvidia.com/gpu."
    )


def test_tolerations() -> None:
    taint = {"key": "k", "value": "v", "effect": "NoExecute"}
    assert tolerates([{"operator": "Exists"}], taint)
    assert tolerates([{"key": "k", "operator": "Exists"}], taint)
    assert not tolerates([{"key": "k", "value": "w"}], taint)
    assert not tolerates([{"key": "k", "value": "v", "effect": "NoSchedule"}], taint)
