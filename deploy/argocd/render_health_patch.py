#!/usr/bin/env python3
"""Writes argocd-cm-health.yaml from health/*.lua (the Lua files are the source; `make argocd-health`).

Each kind's check is health/lib.lua (shared helpers) followed by health/<kind>.lua: Argo CD runs every
check as one standalone script. tests/argocd runs exactly what `script()` composes.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
KINDS = {"TrainingJob": "trainingjob.lua", "ModelVersion": "modelversion.lua", "Model": "model.lua"}
HEADER = """\
# Argo CD health checks for the clm.dev kinds: merge into the argocd-cm ConfigMap, e.g.
#   kubectl -n argocd patch configmap argocd-cm --type merge --patch-file deploy/argocd/argocd-cm-health.yaml
# GENERATED from deploy/argocd/health/*.lua by render_health_patch.py: edit the .lua files instead.
apiVersion: v1
kind: ConfigMap
metadata:
  name: argocd-cm
  namespace: argocd
  labels:
    app.kubernetes.io/name: argocd-cm
    app.kubernetes.io/part-of: argocd
data:
"""


def script(kind: str) -> str:
    """The complete health check of ``kind`` as Argo CD runs it."""
    return (HERE / "health" / "lib.lua").read_text() + "\n" + (HERE / "health" / KINDS[kind]).read_text()


def render() -> str:
    parts = [HEADER]
    for kind in KINDS:
        lua = script(kind)
        body = "".join(f"    {line}\n" if line else "\n" for line in lua.rstrip("\n").split("\n"))
        parts.append(f"  resource.customizations.health.clm.dev_{kind}: |\n{body}")
    return "".join(parts)


if __name__ == "__main__":
    target = HERE / "argocd-cm-health.yaml"
    target.write_text(render())
    sys.stdout.write(f"wrote {target}\n")
