"""clm-operator: continuous learning for trading models, as a Kubernetes operator.

Importing this package (or ``clm_operator.api`` / ``clm_operator.domain``) must stay free of kopf and
Kubernetes imports: the trainer image imports the API models and the promotion maths from here.
"""

GROUP = "clm.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
