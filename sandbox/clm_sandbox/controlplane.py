"""A real Kubernetes control plane on loopback: etcd, kube-apiserver and kube-controller-manager, the
binaries ``scripts/build-controlplane.sh`` builds from the Go modules pinned in ``controlplane/``.

- etcd listens on a free loopback port, plain HTTP: nothing but the API server (and the compaction
  helper of the tests) talks to it, and only on 127.0.0.1.
- kube-apiserver serves TLS with a certificate from a per-sandbox CA (SANs 127.0.0.1 and the
  ``kubernetes.default.svc`` names), authenticates client certificates and ServiceAccount tokens
  (signed with a per-sandbox key), authorizes with Node,RBAC and admits with the default plugins,
  PodSecurity included.
- kube-controller-manager runs the controllers a training run needs (Job, garbage collector,
  TTL-after-finished, Deployment/ReplicaSet, namespace, ServiceAccount and its token, the root CA
  publisher, pod GC, node lifecycle), each with its own ServiceAccount credentials.

Every process runs in its own process group with its output in ``<workdir>/logs/<name>.log``;
``stop()`` ends each group (SIGTERM, then SIGKILL), and a process whose parent dies is killed by the
kernel (PR_SET_PDEATHSIG), so no control plane outlives its sandbox.
"""

from __future__ import annotations

import base64
import ctypes
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from clm_sandbox.certs import API_SERVER_DNS_NAMES, CertificateAuthority, service_account_signing_key

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO_ROOT / "scripts" / "build-controlplane.sh"
SERVICE_CIDR = "10.96.0.0/16"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
ADMIN_USER = "clm-sandbox-admin"

# The controllers a training run and the operator's Deployment need, by their 1.35 names.
CONTROLLERS = (
    "job-controller",
    "garbage-collector-controller",
    "ttl-after-finished-controller",
    "deployment-controller",
    "replicaset-controller",
    "namespace-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "root-ca-certificate-publisher-controller",
    "pod-garbage-collector-controller",
    # Takes the node.kubernetes.io/not-ready taint (set at registration by the TaintNodesByCondition
    # admission plugin) off the node agent's Node once it reports Ready, as in any cluster.
    "node-lifecycle-controller",
    # Merges ClusterRoles labelled aggregate-to-{view,edit,admin} (the chart's clm-viewer / clm-editor)
    # into the built-in view / edit / admin roles.
    "clusterrole-aggregation-controller",
)


class ControlPlaneError(RuntimeError):
    """The control plane could not be built, found or started; the message names the log to read."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def controlplane_bin() -> Path:
    """The directory with etcd, kube-apiserver and kube-controller-manager: $CLM_CONTROLPLANE_BIN, else
    the cache entry ``scripts/build-controlplane.sh --check`` names (built by scripts/setup.sh)."""
    override = os.environ.get("CLM_CONTROLPLANE_BIN")
    if override:
        return Path(override)
    result = subprocess.run(
        ["bash", str(BUILD_SCRIPT), "--check"], capture_output=True, text=True, timeout=60, check=False
    )
    if result.returncode != 0:
        raise ControlPlaneError(
            f"the sandbox control plane is not built: {result.stderr.strip()} "
            "(run scripts/setup.sh, or scripts/build-controlplane.sh)"
        )
    return Path(result.stdout.strip().splitlines()[-1])


def _die_with_parent() -> None:
    """preexec_fn: the kernel SIGKILLs the child when the process that started it dies."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def start_process(argv: list[str], log_path: Path, *, env: dict[str, str] | None = None,
                  cwd: Path | None = None) -> subprocess.Popen[bytes]:
    """A child in its own process group (so that stopping it ends everything it started), its
    output appended to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log_file:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=str(cwd) if cwd else None,
            start_new_session=True,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - fork+exec of a plain binary, no threads touched
        )


def stop_process(process: subprocess.Popen[bytes] | None, timeout: float = 10.0) -> None:
    """SIGTERM to the process's group, SIGKILL to it after ``timeout`` seconds; reaps the process."""
    if process is None:
        return
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, timeout)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            pass
        try:
            process.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        # The leader is gone; anything left in its group still gets the signal once more.
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return


def kubeconfig_document(server: str, ca_pem: bytes, cert_pem: bytes, key_pem: bytes, user: str,
                        namespace: str = "default") -> dict[str, Any]:
    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    return {
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": [{"name": "clm-sandbox",
                      "cluster": {"server": server, "certificate-authority-data": b64(ca_pem)}}],
        "users": [{"name": user, "user": {"client-certificate-data": b64(cert_pem),
                                          "client-key-data": b64(key_pem)}}],
        "contexts": [{"name": "clm-sandbox",
                      "context": {"cluster": "clm-sandbox", "user": user, "namespace": namespace}}],
        "current-context": "clm-sandbox",
    }


class ControlPlane:
    def __init__(self, workdir: Path, *, host: str = "127.0.0.1", port: int | None = None,
                 bin_dir: Path | None = None, namespace: str = "default") -> None:
        self.workdir = workdir
        self.host = host
        self.namespace = namespace
        self.bin_dir = bin_dir
        self.pki = workdir / "pki"
        self.logs = workdir / "logs"
        self.admin_kubeconfig = workdir / "kubeconfig"
        self.etcd_port = free_port(host)
        self.etcd_peer_port = free_port(host)
        self.api_port = port or free_port(host)
        self.controller_manager_port = free_port(host)
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def server(self) -> str:
        return f"https://{self.host}:{self.api_port}"

    @property
    def etcd_url(self) -> str:
        return f"http://{self.host}:{self.etcd_port}"

    @property
    def ca_file(self) -> Path:
        return self.pki / "ca.crt"

    # -- lifecycle -------------------------------------------------------------------------------------
    def start(self, timeout: float = 120.0) -> ControlPlane:
        bin_dir = self.bin_dir or controlplane_bin()
        self.bin_dir = bin_dir
        for name in ("etcd", "kube-apiserver", "kube-controller-manager"):
            if not os.access(bin_dir / name, os.X_OK):
                raise ControlPlaneError(f"{bin_dir / name} missing: run scripts/setup.sh")
        self._write_pki()
        deadline = time.monotonic() + timeout
        try:
            self._start_etcd()
            self._wait("etcd", lambda: self._http_ok(f"{self.etcd_url}/health"), deadline)
            self._start_apiserver()
            self._wait("kube-apiserver", lambda: self._api_ok("/readyz"), deadline)
            self._start_controller_manager()
        except BaseException:
            self.stop()
            raise
        return self

    def restart_apiserver(self, timeout: float = 120.0) -> None:
        """Stops and starts kube-apiserver (same port, certificates and etcd): every client's watch
        breaks and resumes from its last resourceVersion, as after a control plane upgrade."""
        stop_process(self.processes.pop("kube-apiserver", None))
        self._start_apiserver()
        self._wait("kube-apiserver", lambda: self._api_ok("/readyz"), time.monotonic() + timeout)

    def stop(self) -> None:
        # The reverse order: nothing writes to an API server that is gone, nor to etcd.
        for name in reversed(list(self.processes)):
            stop_process(self.processes.pop(name))

    def log_tail(self, name: str, chars: int = 3000) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def _wait(self, name: str, ready: Any, deadline: float) -> None:
        process = self.processes[name]
        while not ready():
            if process.poll() is not None:
                raise ControlPlaneError(
                    f"{name} exited with {process.returncode}; {self.logs / (name + '.log')}:\n"
                    f"{self.log_tail(name)}"
                )
            if time.monotonic() > deadline:
                raise ControlPlaneError(f"{name} not ready in time; log tail:\n{self.log_tail(name)}")
            time.sleep(0.1)

    # -- certificates ------------------------------------------------------------------------------------
    def _write_pki(self) -> None:
        self.pki.mkdir(parents=True, exist_ok=True)
        ca = CertificateAuthority()
        self.ca_pem = ca.pair.cert_pem
        ca.pair.write(self.pki, "ca")
        ca.issue(
            "kube-apiserver", dns_names=API_SERVER_DNS_NAMES, server=True,
            ip_addresses=(self.host, "10.96.0.1"),
        ).write(self.pki, "apiserver")
        self.admin = ca.issue(ADMIN_USER, organizations=("system:masters",))
        self.admin.write(self.pki, "admin")
        controller_manager = ca.issue("system:kube-controller-manager")
        service_account_signing_key().write(self.pki, "sa")
        self.admin_kubeconfig.write_text(yaml.safe_dump(kubeconfig_document(
            self.server, self.ca_pem, self.admin.cert_pem, self.admin.key_pem, ADMIN_USER, self.namespace),
            sort_keys=False))
        self.admin_kubeconfig.chmod(0o600)
        self.controller_manager_kubeconfig = self.pki / "kube-controller-manager.kubeconfig"
        self.controller_manager_kubeconfig.write_text(yaml.safe_dump(kubeconfig_document(
            self.server, self.ca_pem, controller_manager.cert_pem, controller_manager.key_pem,
            "system:kube-controller-manager"), sort_keys=False))
        self.controller_manager_kubeconfig.chmod(0o600)

    # -- the processes -----------------------------------------------------------------------------------
    def _start(self, name: str, argv: list[str]) -> None:
        assert self.bin_dir is not None
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.workdir),
               "GOMAXPROCS": os.environ.get("CLM_CONTROLPLANE_GOMAXPROCS", "2")}
        self.processes[name] = start_process([str(self.bin_dir / name), *argv], self.logs / f"{name}.log",
                                             env=env, cwd=self.workdir)

    def _start_etcd(self) -> None:
        data = self.workdir / "etcd"
        self._start("etcd", [
            "--name=clm-sandbox",
            f"--data-dir={data}",
            f"--listen-client-urls={self.etcd_url}",
            f"--advertise-client-urls={self.etcd_url}",
            f"--listen-peer-urls=http://{self.host}:{self.etcd_peer_port}",
            f"--initial-advertise-peer-urls=http://{self.host}:{self.etcd_peer_port}",
            f"--initial-cluster=clm-sandbox=http://{self.host}:{self.etcd_peer_port}",
            "--log-level=warn",
            # A sandbox's data lives minutes: no fsync per write (the tests' disk is shared), small WAL.
            "--unsafe-no-fsync",
            "--snapshot-count=10000",
            "--quota-backend-bytes=1073741824",
        ])

    def _start_apiserver(self) -> None:
        pki = self.pki
        self._start("kube-apiserver", [
            f"--etcd-servers={self.etcd_url}",
            f"--bind-address={self.host}",
            f"--advertise-address={self.host}",
            f"--secure-port={self.api_port}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            # kubectl logs/exec go through the API server to the node agent, which wants a client
            # certificate of the sandbox's CA.
            f"--kubelet-client-certificate={pki / 'admin.crt'}",
            f"--kubelet-client-key={pki / 'admin.key'}",
            "--authorization-mode=Node,RBAC",
            "--anonymous-auth=false",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-key-file={pki / 'sa.crt'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            # The default admission plugins (PodSecurity among them) plus NodeRestriction, as kubeadm.
            "--enable-admission-plugins=NodeRestriction",
            "--allow-privileged=false",
            # Loopback cannot be an Endpoints address: nothing reconciles the `kubernetes` Service;
            # in-cluster clients reach the server through KUBERNETES_SERVICE_HOST=127.0.0.1.
            "--endpoint-reconciler-type=none",
            f"--cert-dir={pki}",
            "--profiling=false",
            "--event-ttl=1h",
            "--v=0",
        ])

    def _start_controller_manager(self) -> None:
        pki, kubeconfig = self.pki, self.controller_manager_kubeconfig
        self._start("kube-controller-manager", [
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            # No front proxy in the sandbox: nothing to look up for request-header authentication.
            "--authentication-skip-lookup=true",
            f"--bind-address={self.host}",
            f"--secure-port={self.controller_manager_port}",
            f"--controllers={','.join(CONTROLLERS)}",
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--root-ca-file={pki / 'ca.crt'}",
            f"--cluster-signing-cert-file={pki / 'ca.crt'}",
            f"--cluster-signing-key-file={pki / 'ca.key'}",
            "--leader-elect=false",
            # Finished pods are collected by their Jobs' TTL or deletion, not by a count.
            "--terminated-pod-gc-threshold=1000",
            # A sandbox's controllers react at once rather than after production's batching delays.
            "--concurrent-gc-syncs=5",
            "--v=0",
        ])

    # -- talking to it -----------------------------------------------------------------------------------
    def ssl_context(self) -> ssl.SSLContext:
        """TLS to the API server as the admin (system:masters)."""
        context = ssl.create_default_context(cafile=str(self.ca_file))
        context.load_cert_chain(str(self.pki / "admin.crt"), str(self.pki / "admin.key"))
        return context

    def _http_ok(self, url: str) -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return bool(response.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def _api_ok(self, path: str) -> bool:
        try:
            with urllib.request.urlopen(f"{self.server}{path}", timeout=2,
                                        context=self.ssl_context()) as response:
                return bool(response.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def etcd_request(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """A call to etcd's v3 gRPC gateway (JSON over HTTP on the client URL)."""
        request = urllib.request.Request(f"{self.etcd_url}{path}", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=30) as response:
            result: dict[str, Any] = json.loads(response.read())
            return result

    def compact_etcd(self) -> int:
        """Compacts etcd's history up to its current revision (physically), as etcd's own periodic
        compaction would: every watch from an older resourceVersion then ends in 410 Gone. Returns the
        revision compacted to."""
        revision = int(self.etcd_request("/v3/kv/range", {"key": base64.b64encode(b"/").decode(),
                                                           "count_only": True})["header"]["revision"])
        self.etcd_request("/v3/kv/compaction", {"revision": revision, "physical": True})
        return revision


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
