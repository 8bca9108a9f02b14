"""The distributions depend on each other only as docs/architecture.md section 2 says: clm-operator and
clm-trainer each on clm-contract and never on each other; clm-contract on neither; clm-sandbox
(development only) on the operator and the contract, and nothing depends on it.

Three checks: every module of a package imports in a fresh interpreter where the packages it must not
need are absent (a meta path finder refuses them, as an image without them would); no module names them
in an import statement, lazy ones inside functions included; and the pyproject.toml files declare no
such dependency (the operator image installs clm-contract and clm-operator only: tests/chart/test_images.py
checks its Dockerfile).
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# package -> (its directory, the distribution, the top-level modules it must import without)
PACKAGES: dict[str, tuple[Path, str, frozenset[str]]] = {
    "clm_contract": (ROOT / "contract", "clm-contract", frozenset(
        {"clm_operator", "clm_trainer", "clm_sandbox", "kopf", "kubernetes", "numpy", "pandas", "torch"})),
    # the operator image has no ML stack and no sandbox
    "clm_operator": (ROOT / "operator", "clm-operator", frozenset(
        {"clm_trainer", "clm_sandbox", "moto", "numpy", "pandas", "torch", "xgboost"})),
    # the trainer never talks to the Kubernetes API (its pod has no token)
    "clm_trainer": (ROOT / "trainer-image", "clm-trainer", frozenset(
        {"clm_operator", "clm_sandbox", "kopf", "kubernetes"})),
}
# distribution -> the project's distributions it may depend on
ALLOWED = {
    "clm-contract": set(),
    "clm-operator": {"clm-contract"},
    "clm-trainer": {"clm-contract"},
    "clm-sandbox": {"clm-contract", "clm-operator"},
}

IMPORT_EVERY_MODULE = """
import importlib, importlib.abc, pkgutil, sys

absent = set(sys.argv[2].split(","))


class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in absent:
            raise ModuleNotFoundError(f"No module named {name!r} (absent in this check)", name=name)
        return None


sys.meta_path.insert(0, Absent())
package = importlib.import_module(sys.argv[1])


def fail(name):
    raise ImportError(f"cannot import {name}")


names = [info.name for info in pkgutil.walk_packages(package.__path__, package.__name__ + ".", onerror=fail)]
for name in names:
    importlib.import_module(name)
print(len(names))
"""


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_every_module_imports_without_the_packages_it_must_not_need(package: str) -> None:
    _, _, absent = PACKAGES[package]
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_EVERY_MODULE, package, ",".join(sorted(absent))],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 0, f"{package} with {sorted(absent)} absent:\n{result.stderr[-3000:]}"
    assert int(result.stdout.split()[-1]) >= 3, result.stdout  # the walk found the package's modules


def imported_top_levels(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.partition(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.partition(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_no_module_names_a_forbidden_package_even_lazily(package: str) -> None:
    directory, _, absent = PACKAGES[package]
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported_top_levels(path) & absent)
        for path in sorted((directory / package).rglob("*.py"))
    }
    assert {path: names for path, names in offenders.items() if names} == {}


def declared(distribution_dir: Path) -> tuple[str, set[str]]:
    project = tomllib.loads((distribution_dir / "pyproject.toml").read_text())["project"]
    requirements = {
        re.match(r"[A-Za-z0-9._-]+", requirement).group(0).lower().replace("_", "-")  # type: ignore[union-attr]
        for requirement in project["dependencies"]
    }
    return project["name"], requirements


@pytest.mark.parametrize("directory", ["contract", "operator", "trainer-image", "sandbox"])
def test_distributions_depend_only_on_what_they_may(directory: str) -> None:
    name, requirements = declared(ROOT / directory)
    assert name in ALLOWED
    assert {r for r in requirements if r.startswith("clm-")} == ALLOWED[name]


def test_each_distribution_ships_its_own_package_only() -> None:
    for directory, package in (("contract", "clm_contract"), ("operator", "clm_operator"),
                               ("trainer-image", "clm_trainer"), ("sandbox", "clm_sandbox")):
        config = tomllib.loads((ROOT / directory / "pyproject.toml").read_text())
        assert config["tool"]["setuptools"]["packages"]["find"]["include"] == [f"{package}*"], directory
        packages = sorted(p.parent.name for p in (ROOT / directory).glob("*/__init__.py"))
        assert packages == [package], f"{directory}/ holds {packages}"


def test_the_sandbox_is_a_development_dependency_only() -> None:
    requirements = (ROOT / "requirements-dev.txt").read_text().split()
    assert "./sandbox" in requirements
    for directory in ("contract", "operator", "trainer-image"):
        _, declared_requirements = declared(ROOT / directory)
        assert "clm-sandbox" not in declared_requirements, directory


def test_every_declared_console_script_is_installed_beside_this_python() -> None:
    """The sandbox's node agent runs the images' commands from here (clm-operator, clm-trainer)."""
    for directory in ("contract", "operator", "trainer-image", "sandbox"):
        project = tomllib.loads((ROOT / directory / "pyproject.toml").read_text())["project"]
        for script in project.get("scripts", {}):
            installed = Path(sys.executable).parent / script
            assert installed.is_file(), f"{script} ({directory}) is missing: run scripts/setup.sh"
