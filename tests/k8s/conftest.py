"""Each kustomization under deploy/k8s rendered once per session with the real kustomize."""

from __future__ import annotations

import pytest

from tests.k8s.manifests import SERVING, TARGETS, Rendered, render


@pytest.fixture(scope="session")
def rendered() -> dict[str, Rendered]:
    return {name: Rendered(name, render(target)) for name, target in TARGETS.items()}


@pytest.fixture(params=SERVING)
def overlay(request: pytest.FixtureRequest, rendered: dict[str, Rendered]) -> Rendered:
    """Each overlay that runs the mesh (dev, prod)."""
    chosen: Rendered = rendered[request.param]
    return chosen
