"""The sandbox's node agent: a kubelet of the project's own that runs pods as local processes.

Run as ``python -m clm_sandbox.nodeagent`` (see ``nodeagent.py``). Modules:

- ``images``: the image map (image -> local command), the agent's stand-in for a registry.
- ``env``: a container's environment as a kubelet builds it (Secrets, ConfigMaps, fieldRef, $(VAR)).
- ``volumes``: which files each volume holds and where it is mounted.
- ``status``: pod and container status as a kubelet reports it (phase, conditions, states).
- ``scheduling``: the mini-scheduler that binds pods to this node (or reports Unschedulable).
- ``launch``: the per-container shim (private mount/UTS namespace, user switch, exit status file).
- ``runtime``: starts, signals and adopts shims; ``agent``: Node, Lease, watches and pod workers.

The first five are pure (no Kubernetes client, no processes) and unit-tested on their own.
"""
