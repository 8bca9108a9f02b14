"""Pure domain logic: no Kubernetes, S3 or other I/O imports. Tested directly."""
