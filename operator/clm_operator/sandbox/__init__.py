"""The sandbox: an emulated Kubernetes API (kmock, made strict), a local Job executor standing in for the
kubelet and the Job controller, an S3 server, and the real operator as a subprocess (DESIGN.md section 8)."""
