"""The Dockerfiles, read as text (docker cannot build here): pinned bases, pinned Python packages,
non-root, the right entry points, and a build context (.dockerignore) that holds what they COPY."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

import pytest
import yaml

from tests.chart.helm import ROOT

OPERATOR = ROOT / "operator" / "Dockerfile"
TRAINER = ROOT / "trainer-image" / "Dockerfile"
S3 = ROOT / "deploy" / "images" / "s3.Dockerfile"
DOCKERFILES = [OPERATOR, TRAINER, S3]
CONSTRAINTS = ROOT / "deploy" / "images" / "constraints.txt"


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    result = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            result.append((word.upper(), rest.strip()))
    return result


def base_images(path: Path) -> list[str]:
    args = {}
    for word, rest in instructions(path):
        if word == "ARG" and "=" in rest:
            name, _, value = rest.partition("=")
            args[name] = value
    images = []
    for word, rest in instructions(path):
        if word == "FROM":
            image = rest.split()[0]
            images.append(re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image))
    return images


def final_stage(path: Path) -> list[tuple[str, str]]:
    steps = instructions(path)
    last_from = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    return steps[last_from:]


def copied_sources(path: Path) -> list[str]:
    """What the Dockerfile COPYs from the build context (not from another stage)."""
    sources: list[str] = []
    for word, rest in instructions(path):
        if word == "COPY" and not rest.startswith("--from"):
            sources += rest.split()[:-1]
    return sources


def installed_distributions(path: Path) -> list[str]:
    """The local distributions its ``pip install`` lines name (``./contract``...)."""
    names: list[str] = []
    for word, rest in instructions(path):
        if word == "RUN" and "pip install" in rest:
            names += [arg.strip('"') for arg in rest.split() if arg.strip('"').startswith("./")]
    return names


def dockerignore_includes(relative: str) -> bool:
    """Docker's rule: the last matching pattern of .dockerignore decides; `!` re-includes."""
    included = True
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").replace("**", "*")
        # A pattern that matches a directory applies to everything below it.
        parts = relative.split("/")
        candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatch(candidate, pattern) for candidate in candidates):
            included = negate
    return included


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: str(Path(p).relative_to(ROOT)))
def test_base_images_are_pinned(path: Path) -> None:
    for image in base_images(path):
        name, _, tag = image.partition(":")
        assert tag and tag != "latest" and re.search(r"\d+\.\d+", tag), f"{path.name}: unpinned base {image}"


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: str(Path(p).relative_to(ROOT)))
def test_runs_as_non_root_user_10001(path: Path) -> None:
    users = [rest for word, rest in final_stage(path) if word == "USER"]
    assert users and users[-1].split(":")[0] == "10001", f"{path.name}: final USER {users}"


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: str(Path(p).relative_to(ROOT)))
def test_python_packages_are_installed_with_the_constraints(path: Path) -> None:
    pip_runs = [rest for word, rest in instructions(path) if word == "RUN" and "pip install" in rest]
    assert pip_runs
    for run in pip_runs:
        assert "--constraint" in run, f"{path.name}: pip install without the constraints: {run}"


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: str(Path(p).relative_to(ROOT)))
def test_everything_copied_exists_and_is_in_the_build_context(path: Path) -> None:
    for source in copied_sources(path):
        assert (ROOT / source).exists(), f"{path.name}: COPY {source}: no such path"
        probe = source.rstrip("/") + "/__init__.py" if (ROOT / source).is_dir() else source
        assert dockerignore_includes(probe), f"{path.name}: {source} is excluded by .dockerignore"
    assert not dockerignore_includes(".venv/bin/python")
    assert not dockerignore_includes("tests/conftest.py")


def test_trainer_image_is_cuda_capable_and_has_no_entrypoint() -> None:
    images = base_images(TRAINER)
    assert images and all(
        re.fullmatch(r"nvidia/cuda:\d+\.\d+\.\d+-(cudnn-)?runtime-ubuntu\d+\.\d+", i) for i in images
    ), images
    final = final_stage(TRAINER)
    assert ("ENTRYPOINT", "[]") in final, "the CUDA image's entrypoint script must be reset"
    assert installed_distributions(TRAINER) == ["./contract", "./trainer-image"]
    assert not any(source.startswith(("operator/", "sandbox/")) for source in copied_sources(TRAINER))
    env = " ".join(rest for word, rest in final if word == "ENV")
    assert "/opt/clm/bin" in env and "HOME=/tmp" in env


def test_operator_image_runs_the_operator() -> None:
    images = base_images(OPERATOR)
    assert all(i.startswith("python:3.11.") and "slim" in i for i in images), images
    final = final_stage(OPERATOR)
    assert ("ENTRYPOINT", '["clm-operator"]') in final
    installs = " ".join(rest for word, rest in instructions(OPERATOR) if word == "RUN")
    assert "[" not in installs, f"the operator image installs no extra (no dev, no ML stack): {installs}"
    assert installed_distributions(OPERATOR) == ["./contract", "./operator"]
    copied = copied_sources(OPERATOR)
    assert not any(source.startswith(("sandbox/", "trainer-image/")) for source in copied), copied
    assert not any(source in ("pyproject.toml", "requirements-dev.txt") for source in copied), copied
    assert not dockerignore_includes("sandbox/clm_sandbox/cluster.py"), "the sandbox is in no build context"


def test_constraints_pin_every_package_exactly() -> None:
    pins = {}
    for line in CONSTRAINTS.read_text().splitlines():
        if line and not line.startswith("#"):
            name, sep, version = line.partition("==")
            assert sep and version and " " not in version, f"not an exact pin: {line}"
            pins[name.lower()] = version
    assert pins["torch"] == "2.13.0", "the images take the PyPI torch 2.13.0 wheel (CUDA, runs on CPU)"
    for package in ("kopf", "xgboost", "lightgbm", "pydantic", "boto3", "moto"):
        assert package in pins, f"{package} is not pinned"


def test_kind_config_names_the_cluster_the_makefile_uses() -> None:
    config = yaml.safe_load((ROOT / "kind-config.yaml").read_text())
    assert config["kind"] == "Cluster" and config["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(rf"^CLUSTER\s*\?=\s*{config['name']}$", makefile, re.M)
    for target in (
        "setup",
        "test",
        "demo",
        "crds",
        "lint-chart",
        "kind-up",
        "images",
        "kind-load",
        "deploy",
        "e2e",
    ):
        assert re.search(rf"^{target}:", makefile, re.M), f"Makefile has no {target} target"
