# Developer entry points. `make help` lists them. Everything here calls the project's own scripts
# and the tools they install (.venv, .tools/bin); the kind targets also need docker and kind.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV     := .venv
HELM     ?= .tools/bin/helm
KUBECTL  ?= .tools/bin/kubectl
KIND     ?= kind
DOCKER   ?= docker
CLUSTER  ?= clm
CONTEXT  ?= kind-$(CLUSTER)
VERSION  := $(shell sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}/\1/p' charts/clm-operator/Chart.yaml)
OPERATOR_IMAGE := clm-operator:$(VERSION)
TRAINER_IMAGE  := clm-trainer:$(VERSION)
S3_IMAGE       := clm-s3:$(VERSION)
# Namespace where `make deploy` puts the S3 credentials for TrainingJobs (the examples use default).
TJ_NAMESPACE ?= default

.PHONY: help setup test demo crds lint-chart kind-up kind-down images kind-load deploy undeploy e2e \
        constraints argocd-health

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

setup: ## install everything into .venv and .tools/bin (scripts/setup.sh)
	scripts/setup.sh

test: ## the whole test suite: lint, types, tests (scripts/test.sh, what CI runs)
	scripts/test.sh

demo: ## the sandbox demo, no cluster needed (scripts/demo.sh)
	scripts/demo.sh

crds: ## regenerate crds/ and charts/clm-operator/crds/ from the API models
	$(VENV)/bin/clm-operator crds

lint-chart: ## helm lint --strict (values.schema.json applies)
	$(HELM) lint --strict charts/clm-operator
	$(HELM) lint --strict charts/clm-operator --set rbac.namespaced=true --set 'watchNamespaces={trading}'

argocd-health: ## regenerate deploy/argocd/argocd-cm-health.yaml from deploy/argocd/health/*.lua
	$(VENV)/bin/python deploy/argocd/render_health_patch.py

constraints: ## re-pin the image dependencies to the versions in .venv
	{ sed -n '1,3p' deploy/images/constraints.txt; \
	  $(VENV)/bin/pip freeze --exclude-editable | sed 's/+cpu$$//' | grep -v '^clm-'; } > deploy/images/constraints.txt.new
	mv deploy/images/constraints.txt.new deploy/images/constraints.txt

kind-up: ## create the kind cluster of kind-config.yaml (context kind-clm)
	$(KIND) create cluster --config kind-config.yaml --name $(CLUSTER)

kind-down: ## delete the kind cluster
	$(KIND) delete cluster --name $(CLUSTER)

images: ## build the operator, trainer and development S3 images
	$(DOCKER) build -f operator/Dockerfile -t $(OPERATOR_IMAGE) .
	$(DOCKER) build -f trainer-image/Dockerfile -t $(TRAINER_IMAGE) .
	$(DOCKER) build -f deploy/images/s3.Dockerfile -t $(S3_IMAGE) .

kind-load: ## load the images into the kind cluster
	$(KIND) load docker-image --name $(CLUSTER) $(OPERATOR_IMAGE) $(TRAINER_IMAGE) $(S3_IMAGE)

deploy: ## in-cluster S3 (moto) + the chart into kind, S3 credentials into $(TJ_NAMESPACE)
	$(KUBECTL) --context $(CONTEXT) apply -f deploy/kind/s3.yaml
	$(KUBECTL) --context $(CONTEXT) -n clm-system rollout status deployment/clm-s3 --timeout=180s
	$(KUBECTL) --context $(CONTEXT) -n clm-system get secret clm-s3-credentials -o json \
	  | $(VENV)/bin/python -c 'import json,sys; s=json.load(sys.stdin); print(json.dumps({"apiVersion":"v1","kind":"Secret","type":"Opaque","metadata":{"name":s["metadata"]["name"]},"data":s["data"]}))' \
	  | $(KUBECTL) --context $(CONTEXT) -n $(TJ_NAMESPACE) apply -f -
	$(HELM) --kube-context $(CONTEXT) upgrade --install clm-operator charts/clm-operator \
	  --namespace clm-system -f deploy/kind/values-kind.yaml --wait --timeout 5m

undeploy: ## remove the chart and the S3 from kind (the CRDs stay, as helm leaves them)
	-$(HELM) --kube-context $(CONTEXT) uninstall clm-operator --namespace clm-system
	-$(KUBECTL) --context $(CONTEXT) delete -f deploy/kind/s3.yaml

e2e: ## the real-cluster suite against $(CONTEXT) (skipped when it is not reachable)
	PATH="$(CURDIR)/.tools/bin:$$PATH" CLM_E2E_CONTEXT=$(CONTEXT) $(VENV)/bin/python -m pytest tests/e2e -v -p no:cacheprovider
