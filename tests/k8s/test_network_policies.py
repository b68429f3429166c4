"""The NetworkPolicies allow exactly the mesh's call graph, as the code configures it: the gateway
dials ORCHESTRATOR_SERVICE_ADDR, the orchestrator dials every <STEP>_SERVICE_ADDR, steps dial
nothing. Leaving the namespace is allowed only for what a pod's settings point at: DNS, Milvus
(PANTREE_MILVUS_URI), the language model (PANTREE_LLM_BASE_URL), SageMaker
(PANTREE_SAGEMAKER_ENDPOINT) and, with Istio, istiod."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from gateway.config import GatewayConfig
from services.orchestrator.config import OrchestratorConfig
from tests.k8s.manifests import Obj, Rendered, Workload, container_port, selects, upstream_settings

DNS_PORT = 53
HTTPS_PORT = 443
ISTIOD_XDS_PORT = 15012


@dataclass(frozen=True)
class Pod:
    """A pod of a workload, or a stand-in for one in another namespace."""

    name: str
    namespace: str
    namespace_labels: dict[str, str]
    labels: dict[str, str]
    workload: Workload | None = None


def _pods(*releases: Rendered) -> list[Pod]:
    return [
        Pod(w.name, r.namespace, r.namespace_labels, w.labels, w)
        for r in releases
        for w in r.workloads
    ]


def _peer_matches(peer: Obj, pod: Pod, policy_namespace: str) -> bool:
    if "ipBlock" in peer:
        return True  # conservatively: an address block may contain pod addresses too
    if "namespaceSelector" in peer:
        if not selects(peer["namespaceSelector"], pod.namespace_labels):
            return False
    elif pod.namespace != policy_namespace:
        return False
    return "podSelector" not in peer or selects(peer["podSelector"], pod.labels)


def _port_matches(rule: Obj, destination: Pod, port: int) -> bool:
    if not rule.get("ports"):
        return True
    for allowed in rule["ports"]:
        if allowed.get("protocol", "TCP") != "TCP":
            continue
        wanted = allowed["port"]
        if isinstance(wanted, int):
            if wanted == port:
                return True
        elif destination.workload is not None and any(
            container_port(c, wanted) == port for c in destination.workload.containers
        ):
            return True
    return False


def _allowed(policies: list[Obj], source: Pod, destination: Pod, port: int) -> bool:
    """Whether TCP from `source` to `destination`:`port` passes both ends' policies."""

    def side(direction: str, own: Pod, other: Pod, peers_key: str) -> bool:
        chosen = [
            p
            for p in policies
            if p["metadata"]["namespace"] == own.namespace
            and direction in p["spec"]["policyTypes"]
            and selects(p["spec"]["podSelector"], own.labels)
        ]
        if not chosen:
            return own.workload is None  # not ours: assume its own policies let it through
        return any(
            _port_matches(rule, destination, port)
            and (
                peers_key not in rule
                or any(_peer_matches(peer, other, own.namespace) for peer in rule[peers_key])
            )
            for policy in chosen
            for rule in policy["spec"].get(direction.lower(), [])
        )

    return side("Egress", source, destination, "to") and side(
        "Ingress", destination, source, "from"
    )


def _ports(pod: Pod) -> set[int]:
    assert pod.workload is not None
    return {int(p["containerPort"]) for c in pod.workload.containers for p in c.get("ports", [])}


def _expected_call_graph(release: Rendered) -> set[tuple[str, str, int]]:
    """(caller, callee, port) from the settings each caller's code declares."""
    callers: dict[str, Any] = {"orchestrator": OrchestratorConfig(), "gateway": GatewayConfig()}
    edges = set()
    for caller, config in callers.items():
        for step in upstream_settings(config):
            callee = release.serving(step)
            port = container_port(callee.main, "grpc")
            assert port is not None
            edges.add((release.serving(caller).name, callee.name, port))
    return edges


def _with_batch(overlay: Rendered, rendered: dict[str, Rendered]) -> list[Rendered]:
    """The batch job runs in prod's namespace, under prod's policies."""
    batch = rendered["batch"]
    return [overlay, batch] if batch.namespace == overlay.namespace else [overlay]


def test_pods_reach_each_other_exactly_along_the_call_graph(
    overlay: Rendered, rendered: dict[str, Rendered]
) -> None:
    releases = _with_batch(overlay, rendered)
    policies = [p for r in releases for p in r.of_kind("NetworkPolicy")]
    pods = _pods(*releases)
    allowed = {
        (source.name, destination.name, port)
        for source in pods
        for destination in pods
        for port in _ports(destination)
        if _allowed(policies, source, destination, port)
    }
    assert allowed == _expected_call_graph(overlay)


def _outside_ports(policies: list[Obj], pod: Pod) -> set[int]:
    """The ports `pod` may reach outside its namespace (other namespaces, addresses)."""
    ports: set[int] = set()
    for policy in policies:
        spec = policy["spec"]
        if "Egress" not in spec["policyTypes"] or not selects(spec["podSelector"], pod.labels):
            continue
        for rule in spec.get("egress", []):
            leaves = any("ipBlock" in peer or "namespaceSelector" in peer for peer in rule["to"])
            assert rule.get("ports"), f"{policy['metadata']['name']}: egress without ports"
            if leaves:
                ports |= {int(p["port"]) for p in rule["ports"]}
    return ports


def _url_port(url: str) -> int:
    parts = urlsplit(url)
    return parts.port or (HTTPS_PORT if parts.scheme == "https" else 80)


def test_egress_leaves_the_namespace_only_for_configured_dependencies(
    overlay: Rendered, rendered: dict[str, Rendered]
) -> None:
    releases = _with_batch(overlay, rendered)
    policies = [p for r in releases for p in r.of_kind("NetworkPolicy")]
    in_mesh = bool(overlay.of_kind("PeerAuthentication"))
    for release in releases:
        for pod in _pods(release):
            assert pod.workload is not None
            env = release.environment(pod.workload.main)
            expected = {DNS_PORT, ISTIOD_XDS_PORT} if in_mesh else {DNS_PORT}
            if env.get("PANTREE_MILVUS_URI"):
                expected.add(_url_port(env["PANTREE_MILVUS_URI"]))
            if env.get("PANTREE_LLM_BASE_URL"):
                expected.add(_url_port(env["PANTREE_LLM_BASE_URL"]))
            if env.get("PANTREE_SAGEMAKER_ENDPOINT"):
                expected.add(HTTPS_PORT)
            assert _outside_ports(policies, pod) == expected, f"{release.name}/{pod.name}"


def test_from_other_namespaces_only_the_entry_points_and_metrics_are_open(
    overlay: Rendered,
) -> None:
    policies = overlay.of_kind("NetworkPolicy")
    client = Pod("client", "shop", {"pantree.io/orchestrator-client": "true"}, {})
    stranger = Pod("stranger", "elsewhere", {"kubernetes.io/metadata.name": "elsewhere"}, {})
    prometheus = Pod("prometheus", "monitoring", {"kubernetes.io/metadata.name": "monitoring"}, {})
    for pod in _pods(overlay):
        assert pod.workload is not None
        container = pod.workload.main
        grpc, http, metrics = (container_port(container, n) for n in ("grpc", "http", "metrics"))
        if grpc is not None:
            wanted = pod.workload.serves == "orchestrator"
            assert _allowed(policies, client, pod, grpc) is wanted, pod.name
            assert not _allowed(policies, stranger, pod, grpc), pod.name
        if http is not None:
            assert _allowed(policies, stranger, pod, http), "the gateway is the public entry"
        if metrics is not None:
            assert _allowed(policies, prometheus, pod, metrics), pod.name
            assert not _allowed(policies, stranger, pod, metrics), pod.name
