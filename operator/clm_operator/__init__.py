"""clm-operator: continuous learning for trading models, as a Kubernetes operator.

The resource models and the trainer contract live in ``clm_contract``; this package holds the operator
(domain logic, kopf handlers, observability, the kubectl plugin). ``clm_operator.domain`` stays free of
kopf and Kubernetes imports.
"""
