"""Every dependency pyproject.toml declares (the runtime ones and the `dev` extra the tests install) is installed
and its modules import: a package that installs but cannot be imported (FlagEmbedding beside a transformers it
does not support, trafilatura without lxml's html-clean extra) fails here, not in front of a user."""

from __future__ import annotations

import importlib
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
# modules a distribution ships that are not meant to be imported on their own (tests, CLIs, optional backends)
NOT_IMPORTABLE = {"tests", "test", "testing", "benchmarks", "docs", "examples", "scripts", "_distutils_hack"}


def declared() -> list[Requirement]:
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    reqs = [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]]
    return [r for r in reqs if r.marker is None or r.marker.evaluate()]


def top_level_modules(distribution: str) -> list[str]:
    """The importable top-level modules a distribution installed (from its RECORD), e.g. PyJWT → jwt."""
    dist = metadata.distribution(distribution)
    names = set()
    for file in dist.files or []:
        first = file.parts[0]
        if len(file.parts) > 1:  # a package folder (not faiss_cpu.libs, x.dist-info, ../../bin)
            name = first
        elif first.endswith(".py") or first.endswith((".so", ".pyd")) and ".cpython" in first or first.endswith(".abi3.so"):
            name = first.split(".")[0]  # a single-file module or extension
        else:
            continue
        if name.isidentifier() and not name.startswith("__") and name not in NOT_IMPORTABLE:
            names.add(name)
    return sorted(names)


def test_pins_keep_flagembedding_importable():
    """FlagEmbedding 1.4 imports transformers.modeling_attn_mask_utils, gone in transformers 5: the pins hold
    transformers (and sentence-transformers 6, which needs transformers 5) below that."""
    from packaging.version import Version

    assert Version(metadata.version("transformers")) < Version("5")
    assert Version(metadata.version("sentence-transformers")) < Version("6")


@pytest.mark.parametrize("requirement", declared(), ids=lambda r: r.name)
def test_declared_dependency_is_installed_and_imports(requirement: Requirement):
    try:
        version = metadata.version(requirement.name)
    except metadata.PackageNotFoundError:
        pytest.fail(f"{requirement.name} is declared in pyproject.toml but not installed: pip install -e '.[dev]'")
    assert requirement.specifier.contains(version, prereleases=True), \
        f"{requirement.name} {version} does not meet {requirement}"
    modules = top_level_modules(requirement.name)
    assert modules, f"{requirement.name} installed no importable module"
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:  # the failure a user would meet, named with its cause
            pytest.fail(f"{requirement.name} {version}: `import {name}` fails: {exc.__class__.__name__}: {exc}")
