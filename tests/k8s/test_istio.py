"""components/mesh-mtls: Istio's kinds are CRDs that kubernetes-validate has no schema for (the
Makefile skips exactly these kinds there), so their shape is checked here against Istio's
security.istio.io/v1 API, then what they allow: only the gateway may open ProcessSeed streams,
any workload of the mesh may call Recommend, only the orchestrator may call the steps."""

from __future__ import annotations

from pantree_common.descriptors import SERVICES
from services.mesh import STEPS
from tests.k8s.manifests import Obj, Rendered, Workload, container_port, selects

API_VERSION = "security.istio.io/v1"
SPEC_KEYS = {
    "PeerAuthentication": {"selector", "mtls", "portLevelMtls"},
    "AuthorizationPolicy": {"selector", "action", "rules", "provider", "targetRef", "targetRefs"},
}
MTLS_MODES = {"UNSET", "DISABLE", "PERMISSIVE", "STRICT"}
ACTIONS = {"ALLOW", "DENY", "AUDIT", "CUSTOM"}
RULE_KEYS = {"from", "to", "when"}
SOURCE_KEYS = {
    "principals",
    "notPrincipals",
    "requestPrincipals",
    "notRequestPrincipals",
    "namespaces",
    "notNamespaces",
    "ipBlocks",
    "notIpBlocks",
    "remoteIpBlocks",
    "notRemoteIpBlocks",
}
OPERATION_KEYS = {"hosts", "notHosts", "ports", "notPorts", "methods", "notMethods", "paths"}
OPERATION_KEYS |= {"notPaths"}


def _method(step: str, name: str | None = None) -> str:
    service = SERVICES[step]
    method = service.methods_by_name[name] if name else service.methods[0]
    return f"/{service.full_name}/{method.name}"


def _istio(prod: Rendered) -> list[Obj]:
    return [o for o in prod.objects if o["apiVersion"].startswith("security.istio.io/")]


def test_istio_objects_have_the_shape_of_the_v1_api(rendered: dict[str, Rendered]) -> None:
    prod = rendered["prod"]
    objects = _istio(prod)
    assert {o["kind"] for o in objects} == set(SPEC_KEYS)
    for obj in objects:
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        assert obj["apiVersion"] == API_VERSION, name
        assert obj["metadata"]["namespace"] == prod.namespace, name
        spec = obj["spec"]
        assert set(spec) <= SPEC_KEYS[obj["kind"]], name
        assert set(spec.get("selector", {})) <= {"matchLabels"}, name
        if obj["kind"] == "PeerAuthentication":
            assert spec["mtls"]["mode"] in MTLS_MODES, name
            for port, setting in spec.get("portLevelMtls", {}).items():
                assert port.isdigit() and setting["mode"] in MTLS_MODES, name
            continue
        assert spec.get("action", "ALLOW") in ACTIONS, name
        for rule in spec.get("rules", []):
            assert set(rule) <= RULE_KEYS, name
            for source in rule.get("from", []):
                assert set(source) == {"source"} and set(source["source"]) <= SOURCE_KEYS, name
            for operation in rule.get("to", []):
                keys = set(operation["operation"])
                assert set(operation) == {"operation"} and keys <= OPERATION_KEYS, name
                assert all(p.isdigit() for p in operation["operation"].get("ports", [])), name


def _principal(prod: Rendered, workload: Workload) -> str:
    account = workload.pod["serviceAccountName"]
    return f"cluster.local/ns/{prod.namespace}/sa/{account}"


def _operation_matches(operation: Obj, port: int, path: str) -> bool:
    return (
        ("ports" not in operation or str(port) in operation["ports"])
        and ("paths" not in operation or path in operation["paths"])
        and ("methods" not in operation or "POST" in operation["methods"])  # gRPC is POST
    )


def _allows(prod: Rendered, principal: str, workload: Workload, port: int, path: str) -> bool:
    """Istio's ALLOW semantics (no DENY or CUSTOM policies here): with any ALLOW policy on the
    workload (or the namespace-wide one), a request passes when one rule matches it."""
    policies = [
        p["spec"]
        for p in prod.of_kind("AuthorizationPolicy")
        if selects(p["spec"].get("selector", {}), workload.labels)
    ]
    assert all(p.get("action", "ALLOW") == "ALLOW" for p in policies)
    return any(
        all(
            principal in s["source"].get("principals", [principal])
            or "*" in s["source"].get("principals", [])
            for s in rule.get("from", [])
        )
        and (
            "to" not in rule
            or any(_operation_matches(o["operation"], port, path) for o in rule["to"])
        )
        for policy in policies
        for rule in policy.get("rules", [])
    )


def test_mutual_tls_is_strict_for_the_whole_namespace(rendered: dict[str, Rendered]) -> None:
    prod = rendered["prod"]
    defaults = [p for p in prod.of_kind("PeerAuthentication") if "selector" not in p["spec"]]
    assert [p["spec"]["mtls"]["mode"] for p in defaults] == ["STRICT"]
    for policy in prod.of_kind("PeerAuthentication"):
        for port in policy["spec"].get("portLevelMtls", {}):
            chosen = [w for w in prod.deployments if selects(policy["spec"]["selector"], w.labels)]
            assert [w.serves for w in chosen] == ["gateway"], "plain HTTP only into the gateway"
            assert container_port(chosen[0].main, int(port)) == int(port)
    assert prod.namespace_labels.get("istio-injection") == "enabled"


def test_only_the_gateway_may_open_processseed_streams(rendered: dict[str, Rendered]) -> None:
    prod = rendered["prod"]
    gateway = _principal(prod, prod.serving("gateway"))
    orchestrator = prod.serving("orchestrator")
    backend = "cluster.local/ns/shop/sa/checkout"
    port = container_port(orchestrator.main, "grpc")
    assert port is not None
    process_seed = _method("orchestrator", "ProcessSeed")
    recommend = _method("orchestrator", "Recommend")
    assert _allows(prod, gateway, orchestrator, port, process_seed)
    assert _allows(prod, gateway, orchestrator, port, recommend)
    assert not _allows(prod, backend, orchestrator, port, process_seed)
    assert _allows(prod, backend, orchestrator, port, recommend)
    for step in STEPS:
        if step != "orchestrator":
            assert not _allows(prod, backend, orchestrator, port, _method(step))


def test_only_the_orchestrator_may_call_the_steps(rendered: dict[str, Rendered]) -> None:
    prod = rendered["prod"]
    orchestrator = _principal(prod, prod.serving("orchestrator"))
    others = [_principal(prod, prod.serving("gateway")), "cluster.local/ns/shop/sa/checkout"]
    for step in STEPS:
        if step == "orchestrator":
            continue
        workload = prod.serving(step)
        port = container_port(workload.main, "grpc")
        assert port is not None
        assert _allows(prod, orchestrator, workload, port, _method(step)), step
        for principal in others:
            assert not _allows(prod, principal, workload, port, _method(step)), step
