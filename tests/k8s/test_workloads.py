"""Policy tests over the rendered manifests: what every pod must have, and that the manifests
agree with the code (commands, health service names, settings, drain times, addresses)."""

from __future__ import annotations

import shlex
from typing import Any

import pytest

from gateway.config import GatewayConfig
from pantree_common import config as config_loader
from pantree_common.client import ClientConfig
from pantree_common.descriptors import SERVICES
from pantree_common.server import ServerConfig
from services.cli import build_parser
from services.mesh import STEPS, MeshConfig
from services.orchestrator.config import OrchestratorConfig
from tests.k8s.manifests import (
    IMAGE_NAME,
    Obj,
    Rendered,
    Workload,
    container_port,
    declared_settings,
    probes,
    selects,
    service_of,
    upstream_settings,
)

# Variables the image or Kubernetes itself needs, which are not Pantree settings.
OTHER_VARIABLES = {"JOB_COMPLETION_INDEX"}


def _all_workloads(rendered: dict[str, Rendered]) -> list[tuple[Rendered, Workload]]:
    return [(r, w) for r in rendered.values() for w in r.workloads]


def test_every_step_and_the_gateway_have_one_deployment(overlay: Rendered) -> None:
    assert sorted(w.serves or "" for w in overlay.deployments) == sorted([*STEPS, "gateway"])


def test_every_container_is_locked_down_and_has_limits(rendered: dict[str, Rendered]) -> None:
    for release, workload in _all_workloads(rendered):
        where = f"{release.name}/{workload.name}"
        pod = workload.pod
        assert pod["securityContext"]["runAsNonRoot"] is True, where
        assert pod["securityContext"]["runAsUser"] != 0, where
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", where
        assert pod["automountServiceAccountToken"] is False, where
        release.get("ServiceAccount", pod["serviceAccountName"])  # its own identity
        for container in workload.all_containers:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["runAsNonRoot"] is True, where
            assert context["capabilities"]["drop"] == ["ALL"], where
            resources = container["resources"]
            for kind in ("requests", "limits"):
                assert set(resources[kind]) >= {"cpu", "memory"}, f"{where}: {kind}"


def test_images_are_the_pantree_image_with_a_pinned_tag(rendered: dict[str, Rendered]) -> None:
    for release, workload in _all_workloads(rendered):
        for container in workload.all_containers:
            name, _, tag = container["image"].rpartition(":")
            assert name.rsplit("/", 1)[-1] == IMAGE_NAME, f"{release.name}/{workload.name}"
            assert tag and tag != "latest", f"{release.name}/{workload.name}: {container['image']}"


def test_every_long_running_container_has_probes_on_its_own_ports(overlay: Rendered) -> None:
    for workload in overlay.deployments:
        container = workload.main
        found = dict(probes(container))
        assert {"readinessProbe", "livenessProbe"} <= set(found), workload.name
        for kind, probe in found.items():
            handler = probe.get("grpc") or probe.get("httpGet") or probe.get("tcpSocket")
            assert handler is not None, f"{workload.name} {kind}"
            port = container_port(container, handler["port"])
            assert port is not None, f"{workload.name} {kind}: port {handler['port']} not declared"


def test_grpc_probes_ask_for_the_health_entry_the_step_registers(overlay: Rendered) -> None:
    """pantree_common.server sets one grpc.health.v1 entry per service, named after the proto
    service (SERVICES), SERVING once its adapters are ready."""
    for step in STEPS:
        workload = overlay.serving(step)
        container = workload.main
        grpc_probes = [p["grpc"] for _, p in probes(container)]
        assert len(grpc_probes) == 3, f"{step}: startup, readiness and liveness probes"
        for probe in grpc_probes:
            assert probe["service"] == SERVICES[step].full_name
            assert probe["port"] == container_port(container, "grpc")
        assert container_port(container, "grpc") == _int_setting(
            overlay, container, ServerConfig, "PORT"
        )


def test_container_arguments_are_pantree_commands(rendered: dict[str, Rendered]) -> None:
    parser = build_parser()
    for release, workload in _all_workloads(rendered):
        container = workload.main
        assert "command" not in container, "the image's entry point is `pantree`"
        args = [arg.replace("$(JOB_COMPLETION_INDEX)", "0") for arg in container["args"]]
        try:
            parser.parse_args(args)
        except SystemExit:
            pytest.fail(f"{release.name}/{workload.name}: `pantree {shlex.join(args)}` is invalid")


def test_settings_are_declared_and_valid(rendered: dict[str, Rendered]) -> None:
    """Every variable in the ConfigMaps is a setting the code declares, and every process loads
    its configuration from them without a ConfigError."""
    known = declared_settings().keys() | OTHER_VARIABLES
    for release, workload in _all_workloads(rendered):
        container = workload.main
        env = release.environment(container)
        unknown = sorted(set(env) - known)
        assert not unknown, f"{release.name}/{workload.name}: unknown settings {unknown}"
        if workload.serves == "gateway":
            config_loader.load(GatewayConfig, env)
            config_loader.load(ClientConfig, env)
        else:
            config_loader.load(MeshConfig, env)


def _prestop_seconds(container: Obj) -> float:
    hook = container.get("lifecycle", {}).get("preStop", {})
    if "sleep" in hook:
        return float(hook["sleep"]["seconds"])
    command = hook.get("exec", {}).get("command", [])
    if command[:1] == ["sleep"]:
        return float(command[1])
    return 0.0


def _float_setting(release: Rendered, container: Obj, config: type, variable: str) -> float:
    defaults = {s.env_var: s.default for s in config_loader.settings(config())}
    return float(release.environment(container).get(variable, defaults[variable]))


def _int_setting(release: Rendered, container: Obj, config: type, variable: str) -> int:
    return int(_float_setting(release, container, config, variable))


def test_termination_grace_covers_prestop_and_draining(overlay: Rendered) -> None:
    """SIGTERM comes after the preStop sleep; the pod is killed terminationGracePeriodSeconds
    after the start of preStop. gRPC servers drain for PANTREE_SHUTDOWN_GRACE_S; the gateway
    lets its longest call finish, a ProcessSeed stream (the orchestrator's deadline)."""
    orchestrator = overlay.serving("orchestrator").main
    stream_s = _float_setting(
        overlay, orchestrator, OrchestratorConfig, "PANTREE_PROCESS_SEED_TIMEOUT_S"
    )
    for workload in overlay.deployments:
        container = workload.main
        prestop = _prestop_seconds(container)
        assert prestop > 0, f"{workload.name}: a preStop sleep lets endpoints drop the pod first"
        if workload.serves == "gateway":
            drain = stream_s
        else:
            drain = _float_setting(overlay, container, ServerConfig, "PANTREE_SHUTDOWN_GRACE_S")
        grace = workload.pod["terminationGracePeriodSeconds"]
        assert grace > prestop + drain, f"{workload.name}: {grace} <= {prestop} + {drain}"
    orchestrator_drain = _float_setting(
        overlay, orchestrator, ServerConfig, "PANTREE_SHUTDOWN_GRACE_S"
    )
    assert orchestrator_drain >= stream_s, "a ProcessSeed stream must be able to finish draining"


def test_every_service_selects_one_deployment_on_a_declared_port(overlay: Rendered) -> None:
    for service in overlay.of_kind("Service"):
        selector = {"matchLabels": service["spec"]["selector"]}
        chosen = [w for w in overlay.deployments if selects(selector, w.labels)]
        name = service["metadata"]["name"]
        assert len(chosen) == 1, f"Service {name} selects {[w.name for w in chosen]}"
        for port in service["spec"]["ports"]:
            assert container_port(chosen[0].main, port["targetPort"]) is not None, name


def test_grpc_services_are_headless_for_round_robin(overlay: Rendered) -> None:
    """A ClusterIP gives one address, so a round_robin channel would hold one connection; DNS
    of a headless Service gives every ready pod."""
    for step in STEPS:
        workload = overlay.serving(step)
        service = overlay.get("Service", workload.name)
        assert service["spec"]["clusterIP"] == "None", step
        assert service["spec"]["ports"][0]["name"] == "grpc"
        assert overlay.environment(workload.main)["PANTREE_GRPC_LB_POLICY"] == "round_robin"
        age = _float_setting(overlay, workload.main, ServerConfig, "PANTREE_MAX_CONNECTION_AGE_S")
        assert age > 0, f"{step}: without a connection age clients never see new pods"


def test_upstream_addresses_name_the_service_of_that_step(overlay: Rendered) -> None:
    """What the orchestrator and the gateway dial (<STEP>_SERVICE_ADDR, ORCHESTRATOR_SERVICE_ADDR)
    is set, and names the Service in front of the Deployment serving that step."""
    callers: dict[str, Any] = {"orchestrator": OrchestratorConfig(), "gateway": GatewayConfig()}
    for caller, config in callers.items():
        env = overlay.environment(overlay.serving(caller).main)
        for step, variable in upstream_settings(config).items():
            address = env.get(variable, "")
            assert address, f"{caller}: {variable} must be set, the step runs in another pod"
            named = service_of(address, overlay.namespace)
            assert named is not None, f"{caller}: {variable}={address} is not a Service here"
            service = overlay.get("Service", named[0])
            ports = {p["port"] for p in service["spec"]["ports"]}
            assert named[1] in ports, f"{caller}: {variable}={address}: no such port"
            target = overlay.serving(step)
            assert selects({"matchLabels": service["spec"]["selector"]}, target.labels)


def test_dev_runs_one_of_everything_with_milvus_lite_on_a_claim(
    rendered: dict[str, Rendered],
) -> None:
    dev = rendered["dev"]
    assert not dev.of_kind("HorizontalPodAutoscaler")
    assert not dev.of_kind("PodDisruptionBudget")
    assert all(w.obj["spec"]["replicas"] == 1 for w in dev.deployments)
    vectors = dev.serving("vectors")
    env = dev.environment(vectors.main)
    assert not env.get("PANTREE_MILVUS_URI"), "dev keeps vectors in Milvus Lite"
    mounts = {m["mountPath"]: m["name"] for m in vectors.main["volumeMounts"]}
    volume = next(v for v in vectors.pod["volumes"] if v["name"] == mounts[env["PANTREE_DATA_DIR"]])
    claim = dev.get("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"])
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert vectors.obj["spec"]["strategy"]["type"] == "Recreate", "one process per Lite file"


def test_prod_autoscales_the_hot_path_and_budgets_disruptions(
    rendered: dict[str, Rendered],
) -> None:
    prod = rendered["prod"]
    assert prod.environment(prod.serving("vectors").main)["PANTREE_MILVUS_URI"]
    scaled = {}
    for hpa in prod.of_kind("HorizontalPodAutoscaler"):
        spec = hpa["spec"]
        target = prod.get("Deployment", spec["scaleTargetRef"]["name"])
        assert "replicas" not in target["spec"], "kubectl apply would reset what the HPA set"
        assert spec["minReplicas"] >= 2
        assert [m["resource"]["name"] for m in spec["metrics"]] == ["cpu"]
        assert {"scaleUp", "scaleDown"} <= set(spec["behavior"])
        scaled[target["metadata"]["name"]] = spec["minReplicas"]
    assert set(scaled) == {"orchestrator", "recommendation", "vectors"}
    for workload in prod.deployments:
        replicas = scaled.get(workload.name, workload.obj["spec"].get("replicas", 1))
        assert replicas >= 2, f"{workload.name}: one pod is a single point of failure"
        budgets = [
            b
            for b in prod.of_kind("PodDisruptionBudget")
            if selects(b["spec"]["selector"], workload.labels)
        ]
        assert len(budgets) == 1, workload.name
        assert budgets[0]["spec"]["maxUnavailable"] < replicas, workload.name
