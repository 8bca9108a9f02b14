#!/usr/bin/env bash
# Installs everything the project needs, from the project's own files, into .venv (idempotent).
# torch first: the pinned CPU wheel; any other torch request would pull gigabytes of CUDA.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
python="${PYTHON:-python3}"
# Each step says what it does on stderr, and how long it took: a first run downloads torch (~3 GB) and
# builds the control plane (~18 minutes on 2 cores); a repeated run takes seconds.
started=$SECONDS
step() { echo "setup: $* ($((SECONDS - started)) s)" >&2; }
step "python virtual environment .venv"
[ -x .venv/bin/python ] || "$python" -m venv .venv
# pip's notes about unused local index locations are noise here; real errors still fail the script.
pip_install() {
  .venv/bin/python -m pip --disable-pip-version-check -q install "$@" 2>&1 | { grep -v '^WARNING: Location' || true; }
  return "${PIPESTATUS[0]}"
}
# Whether a module is installed, without importing it (importing torch alone takes seconds).
installed() { .venv/bin/python -c "import importlib.util, sys; sys.exit(not all(importlib.util.find_spec(m) for m in sys.argv[1:]))" "$@"; }
step "torch 2.13.0 (the first download is about 3 GB)"
installed torch || pip_install "torch==2.13.0"
step "the four distributions (editable) and the development tools (requirements-dev.txt)"
# The four distributions (editable) and the development tools, from requirements-dev.txt; skipped when
# neither it nor a pyproject.toml changed since the last install that passed the import check below.
inputs=(requirements-dev.txt contract/pyproject.toml operator/pyproject.toml trainer-image/pyproject.toml
        sandbox/pyproject.toml)
stamp=.venv/.clm-dev-install
wanted="$(cat "${inputs[@]}" | sha256sum | cut -d' ' -f1)"
modules=(clm_contract clm_operator clm_trainer clm_sandbox xgboost kopf cryptography pytest)
scripts=(clm-operator kubectl-clm clm-trainer clm-sandbox)
have_scripts() { for s in "${scripts[@]}"; do [ -x ".venv/bin/$s" ] || return 1; done; }
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ] || ! installed "${modules[@]}" || ! have_scripts; then
  pip_install -r requirements-dev.txt
  # A .venv from before the split (one distribution at the root) loses clm-trainer's script: pip removes
  # the old distribution, and every script it had, after installing the new ones. Reinstall them alone.
  have_scripts || pip_install --no-deps --force-reinstall -e ./contract -e ./operator -e ./trainer-image -e ./sandbox
  have_scripts || { echo "missing console scripts in .venv/bin: ${scripts[*]}" >&2; exit 1; }
  .venv/bin/python -c "import $(IFS=,; echo "${modules[*]}")" # fails loudly if the install did not
  echo "$wanted" > "$stamp"
fi
step "kubectl and helm (scripts/install-k8s-tools.sh)"
PYTHON=.venv/bin/python scripts/install-k8s-tools.sh >/dev/null
step "the sandbox's control plane (scripts/build-controlplane.sh; the first build takes ~18 minutes)"
# The sandbox's control plane (etcd, kube-apiserver, kube-controller-manager) from the Go modules pinned in
# controlplane/, built once per machine into ~/.cache/clm-operator (the first build takes a while).
scripts/build-controlplane.sh >/dev/null
step "promtool (Debian package prometheus, for the alert tests)"
if ! command -v promtool >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null) \
      || echo "warning: could not install promtool (Debian package prometheus); alert tests will fail" >&2
  else
    echo "warning: promtool missing: run 'sudo apt-get install prometheus' for the alert tests" >&2
  fi
fi
step "done"
