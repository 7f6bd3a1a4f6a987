"""Fixtures for the deployment files: parsed once per session (they are read-only here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy import compose_checks, k8s_checks

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
K8S_DIR = ROOT / "deploy" / "k8s"


@pytest.fixture(scope="session")
def compose_raw() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def compose(compose_raw: dict[str, Any]) -> dict[str, Any]:
    """The compose file as Compose sees it on a clean machine (no variables exported)."""
    resolved, problems = compose_checks.interpolate(compose_raw)
    assert problems == [], problems
    return resolved


@pytest.fixture(scope="session")
def kustomization() -> dict[str, Any]:
    return yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def manifests(kustomization: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every resource the kustomization applies, namespace set as kustomize would."""
    resources = k8s_checks.load(K8S_DIR / name for name in kustomization["resources"])
    return resources


def by_kind(manifests: list[tuple[str, dict[str, Any]]], kind: str) -> dict[str, dict[str, Any]]:
    return {r["metadata"]["name"]: r for _, r in manifests if r["kind"] == kind}
