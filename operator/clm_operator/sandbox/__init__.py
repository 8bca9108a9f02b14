"""The sandbox: the real operator against an emulated Kubernetes, no cluster needed (DESIGN.md section 8).

Pieces: ``emulator.py`` (kmock's Kubernetes emulator made as strict as a real API server, on top of
``store.py``: resourceVersion/409, generation, status subresource, selectors, watches, finalizers,
cascade, CRD registration and schema validation in ``schema.py``), ``executor.py`` (kubelet + Job
controller running each Job's container as a local process), ``s3server.py`` (moto), ``cluster.py``
(``Sandbox``: all of it plus the operator subprocess), ``cli.py`` (``clm-operator sandbox``) and
``demo.py`` (``clm-operator demo``).

Python::

    with Sandbox() as sandbox:                   # operator=False / s3=False for less
        sandbox.create_namespace("team-a")        # with the S3 credentials Secret in it
        sandbox.kubectl("apply", "-f", "examples/", namespace="team-a", check=True)
        sandbox.restart_operator()                # or stop_operator() / start_operator() / kill_operator()

Shell: ``clm-operator sandbox --ready-file /tmp/ready.json`` prints ``export KUBECONFIG=...``.
"""
