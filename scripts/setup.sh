#!/usr/bin/env bash
# Installs everything the project needs, from the project's own files, into .venv (idempotent).
# torch first: the pinned CPU wheel; any other torch request would pull gigabytes of CUDA.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
python="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$python" -m venv .venv
# pip's notes about unused local index locations are noise here; real errors still fail the script.
pip_install() {
  .venv/bin/python -m pip --disable-pip-version-check -q install "$@" 2>&1 | { grep -v '^WARNING: Location' || true; }
  return "${PIPESTATUS[0]}"
}
.venv/bin/python -c 'import torch' 2>/dev/null || pip_install "torch==2.13.0"
pip_install -e ".[trainer,dev]"
.venv/bin/python -c 'import clm_operator, clm_trainer, xgboost, kopf, cryptography' # fails loudly if the install did not
PYTHON=.venv/bin/python scripts/install-k8s-tools.sh >/dev/null
# The sandbox's control plane (etcd, kube-apiserver, kube-controller-manager) from the Go modules pinned in
# controlplane/, built once per machine into ~/.cache/clm-operator (the first build takes a while).
scripts/build-controlplane.sh >/dev/null
if ! command -v promtool >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null) \
      || echo "warning: could not install promtool (Debian package prometheus); alert tests will fail" >&2
  else
    echo "warning: promtool missing: run 'sudo apt-get install prometheus' for the alert tests" >&2
  fi
fi
