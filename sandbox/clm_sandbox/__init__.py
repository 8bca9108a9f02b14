"""The sandbox: the real operator in a real Kubernetes control plane on this machine
(docs/architecture.md section 8).

Pieces: ``controlplane.py`` (etcd, kube-apiserver with RBAC and PodSecurity, kube-controller-manager: the
binaries scripts/build-controlplane.sh builds from ``controlplane/``; certificates from ``certs.py``),
``nodeagent.py`` and ``node/`` (a kubelet of the project's own: a Ready Node running each container as a
local process), ``s3server.py`` (moto), ``cluster.py`` (``Sandbox``: all of it plus the operator installed
by ``helm install charts/clm-operator``), ``up.py`` (``clm-sandbox up``) and ``demo.py``
(``clm-sandbox demo``); ``cli.py`` is the ``clm-sandbox`` entry point.

Python::

    with Sandbox() as sandbox:                   # operator=False / s3=False for less
        sandbox.create_namespace("team-a")        # Pod Security restricted, the S3 credentials Secret in it
        sandbox.kubectl("apply", "-f", "examples/", namespace="team-a", check=True)
        sandbox.kill_operator()                   # or stop_operator() / start_operator() / restart_operator()

Shell: ``clm-sandbox up --ready-file /tmp/ready.json`` prints ``export KUBECONFIG=...``.
"""
