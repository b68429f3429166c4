"""`pantree doctor`: check every configured dependency and say what works, what is degraded, why.

Each check is a small coroutine taking the loaded configuration and returning one CheckResult;
`plan` lists the checks that apply, so adding a dependency is adding one function to it. Checks
report their expected failures as results; the runner turns anything unexpected into a failed
result too, so the doctor itself never crashes on what it diagnoses.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pantree.domain.v1 import analysis_pb2, product_pb2
from pantree.insights.v1 import insights_service_pb2 as insights_pb
from pantree.orchestrator.v1 import orchestrator_service_pb2 as orchestrator_pb
from pantree.orchestrator.v1.orchestrator_service_pb2_grpc import OrchestratorServiceStub
from rich.console import Console
from rich.table import Table
from rich.text import Text

import pantree_common
from pantree_common import config as config_loader
from pantree_common.client import create_channel
from pantree_common.descriptors import SERVICES
from pantree_common.domain.catalog import builtin_catalog, catalog_file, open_catalog
from pantree_common.errors import ConfigError, PantreeError
from services.insights.fallback import enrich
from services.insights.llm import Rejection
from services.insights.llm_insights import connect
from services.mesh import STEPS, MeshConfig
from services.vectors.config import VectorsConfig
from services.vectors.embedders import collection_prefix, load_embedder, resolve_embedder
from services.vectors.embedding import Embedder
from services.vectors.store import SERVER_SCHEMES, MilvusStore

# Deadline of each remote check: a healthy server answers a health check in milliseconds.
MESH_DEADLINE_S = 2.0
# Milvus Lite holds this advisory flock inside its data directory (the `.db` path) while open.
_MILVUS_LITE_LOCK = "LOCK"
# Loggers that print tracebacks for failures the vector-store check reports itself.
_NOISY_LOGGERS = ("milvus_lite", "pymilvus")
_TEST_TEXT = "pantree doctor: whole milk 1 gallon"


class Status(StrEnum):
    OK = "ok"
    DEGRADED = "degraded"
    FAILED = "failed"


@dataclass(frozen=True)
class CheckResult:
    """One line of the report: what was checked, how it went, and why, in one sentence."""

    name: str
    status: Status
    detail: str


Check = Callable[[MeshConfig], Awaitable[CheckResult]]


@dataclass(frozen=True)
class Report:
    checks: tuple[CheckResult, ...]

    @property
    def ok(self) -> bool:
        """Everything needed works: degraded checks are reported but do not fail the run."""
        return all(check.status is not Status.FAILED for check in self.checks)

    def to_json(self) -> str:
        return json.dumps(
            {"ok": self.ok, "checks": [{**asdict(c), "status": str(c.status)} for c in self.checks]}
        )


def load_configuration(
    environ: Mapping[str, str] | None = None,
) -> tuple[CheckResult, MeshConfig | None]:
    """Load MeshConfig from `environ` (default: the environment over `.env`); a bad setting or a
    malformed `.env` is a failed result carrying the loader's message."""
    name = "configuration"
    try:
        env = config_loader.environment() if environ is None else environ
        config = config_loader.load(MeshConfig, env)
    except ConfigError as exc:
        detail = f"{exc.message} (the local checks need it and were skipped)"
        return CheckResult(name, Status.FAILED, detail), None
    source = "the environment"
    if environ is None and Path(".env").is_file():
        source += " and .env"
    count = sum(1 for _ in config_loader.settings(config))
    return CheckResult(name, Status.OK, f"{count} settings loaded from {source}"), config


def _is_milvus_server(uri: str) -> bool:
    return uri.startswith(SERVER_SCHEMES)


async def check_data_dir(config: MeshConfig) -> CheckResult:
    """The directory the Milvus Lite file lives in exists (or can be created) and is writable."""
    name = "data directory"
    vectors = config.vectors
    if _is_milvus_server(vectors.milvus_uri):
        return CheckResult(
            name, Status.OK, "not used: PANTREE_MILVUS_URI points at a Milvus server"
        )
    directory = Path(vectors.store_uri).parent
    setting = "PANTREE_MILVUS_URI" if vectors.milvus_uri else "PANTREE_DATA_DIR"
    existed = directory.is_dir()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory, prefix=".pantree-doctor-"):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        return CheckResult(name, Status.FAILED, f"{directory} ({setting}) is not usable: {reason}")
    verb = "exists" if existed else "was created"
    return CheckResult(name, Status.OK, f"{directory} ({setting}) {verb} and is writable")


_embedders: dict[VectorsConfig, Embedder | Exception] = {}
_embedders_lock = threading.Lock()


def shared_embedder(config: VectorsConfig) -> Embedder:
    """The configured embedder, loaded once per configuration in this process: the embedder
    and vector-store checks share it (MiniLM takes seconds to load, an endpoint that fails is
    retried with backoff), and a failure to load is remembered too."""
    with _embedders_lock:
        loaded = _embedders.get(config)
        if loaded is None:
            try:
                loaded = load_embedder(config)
            except (PantreeError, ValueError) as exc:
                loaded = exc
            _embedders[config] = loaded
    if isinstance(loaded, Exception):
        raise loaded
    return loaded


async def check_embedder(config: MeshConfig) -> CheckResult:
    """The configured embedder loads and turns a test text into a unit vector of its
    dimensions. PANTREE_EMBEDDER=auto falling back to hashing is degraded: it works, but
    matches products on spelling only."""
    name = "embedder"
    kind, why = resolve_embedder(config.vectors)

    def embed() -> tuple[Embedder, tuple[int, ...], float]:
        embedder = shared_embedder(config.vectors)
        vectors = embedder.embed([_TEST_TEXT])
        return embedder, vectors.shape, float(np.linalg.norm(vectors[0]))

    try:
        embedder, shape, norm = await asyncio.to_thread(embed)
    except (PantreeError, ValueError) as exc:
        return CheckResult(name, Status.FAILED, f"cannot load {kind} ({why}): {exc}")
    dimensions = embedder.dimensions
    device = getattr(embedder, "device", None)
    label = f"{embedder.name} on {device}" if device else embedder.name
    if shape != (1, dimensions) or abs(norm - 1.0) > 1e-3:
        return CheckResult(
            name,
            Status.FAILED,
            f"{label} made a vector of shape {shape} and norm {norm:.3f}, "
            f"expected 1 x {dimensions} of norm 1",
        )
    detail = f"{label} embeds a test text into a unit vector of {dimensions} dimensions"
    if config.vectors.embedder == "auto" and kind == "hashing":
        return CheckResult(name, Status.DEGRADED, f"{detail}; {why}")
    return CheckResult(name, Status.OK, detail)


@contextlib.contextmanager
def _quiet(loggers: Sequence[str]) -> Iterator[None]:
    """Silence libraries that log tracebacks for failures the caller reports itself."""
    saved = {n: logging.getLogger(n).level for n in loggers}
    for n in loggers:
        logging.getLogger(n).setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for n, level in saved.items():
            logging.getLogger(n).setLevel(level)


def _lite_file_locked(path: str) -> bool:
    """Whether another holder has the Milvus Lite file open (its advisory flock is taken)."""
    lock = Path(path).expanduser() / _MILVUS_LITE_LOCK
    try:
        fd = os.open(lock, os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


async def check_vector_store(config: MeshConfig) -> CheckResult:
    """Open the configured store in this process, count its products, close it. A Milvus Lite
    file held by another process (a running server) is degraded: the store is there, but only
    `--target` can check it through that server."""
    name = "vector store"
    vectors = config.vectors
    uri = vectors.store_uri
    where = "Milvus server" if _is_milvus_server(uri) else "Milvus Lite file"

    try:
        embedder = await asyncio.to_thread(shared_embedder, vectors)
    except (PantreeError, ValueError) as exc:
        return CheckResult(name, Status.FAILED, f"cannot open it without the embedder: {exc}")
    prefix = collection_prefix(embedder)

    def count() -> int:
        store = MilvusStore(
            uri,
            embedder.dimensions,
            token=vectors.milvus_token,
            timeout_s=vectors.milvus_timeout_s,
            collection_prefix=prefix,
        )
        try:
            return store.count_products()
        finally:
            store.close()

    try:
        with _quiet(_NOISY_LOGGERS):
            products = await asyncio.to_thread(count)
    except PantreeError as exc:
        if where == "Milvus Lite file" and _lite_file_locked(uri):
            return CheckResult(
                name,
                Status.DEGRADED,
                f"{uri} is held by another process (a running server?): Milvus Lite allows one "
                "process per data file; check it through that server with --target host:port",
            )
        return CheckResult(name, Status.FAILED, exc.message)
    detail = f"{where} {uri} holds {products} products in {prefix}_products"
    if products == 0:
        detail += " (empty: the vectors step indexes the catalog when it starts)"
    return CheckResult(name, Status.OK, detail)


def _rpc_failure(target: str, error: grpc.aio.AioRpcError) -> str:
    code = error.code()
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return f"no answer from {target} within {MESH_DEADLINE_S:g} s"
    if code == grpc.StatusCode.UNAVAILABLE:
        details = error.details() or ""
        if "connection refused" in details.lower():
            return f"cannot reach {target} (UNAVAILABLE): connection refused, is a server running?"
        return f"cannot reach {target} (UNAVAILABLE): {details}"
    return f"{code.name} from {target}: {error.details()}"


async def check_health(config: MeshConfig, target: str, name: str, service: str) -> CheckResult:
    """grpc.health.v1 Check of `service` at `target` ("" is the server as a whole)."""
    what = service or "the server"
    async with create_channel(target, config.client, config.server.max_message_bytes) as channel:
        try:
            response = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=MESH_DEADLINE_S
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return CheckResult(
                    name,
                    Status.FAILED,
                    f"{what} is not served at {target} (a split deployment serves it elsewhere: "
                    "run doctor --target against that address)",
                )
            return CheckResult(name, Status.FAILED, _rpc_failure(target, exc))
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
    if response.status == health_pb2.HealthCheckResponse.SERVING:
        return CheckResult(name, Status.OK, f"{what} is SERVING at {target}")
    if response.status == health_pb2.HealthCheckResponse.NOT_SERVING:
        return CheckResult(
            name,
            Status.DEGRADED,
            f"{what} reports NOT_SERVING at {target} (starting, draining, or its adapter failed)",
        )
    return CheckResult(name, Status.FAILED, f"{what} reports {status} at {target}")


async def check_server_version(config: MeshConfig, target: str) -> CheckResult:
    """OrchestratorService/GetConfig answers, and says which Pantree version serves."""
    name = "server version"
    async with create_channel(target, config.client, config.server.max_message_bytes) as channel:
        try:
            response = await OrchestratorServiceStub(channel).GetConfig(
                orchestrator_pb.GetConfigRequest(), timeout=MESH_DEADLINE_S
            )
        except grpc.aio.AioRpcError as exc:
            return CheckResult(name, Status.FAILED, f"GetConfig: {_rpc_failure(target, exc)}")
    detail = f"Pantree {response.version} serves {target}"
    if response.version != pantree_common.__version__:
        detail += f" (this command is {pantree_common.__version__})"
    return CheckResult(name, Status.OK, detail)


def _health(target: str, name: str, service: str) -> Check:
    async def check(config: MeshConfig) -> CheckResult:
        return await check_health(config, target, name, service)

    return check


def _version(target: str) -> Check:
    async def check(config: MeshConfig) -> CheckResult:
        return await check_server_version(config, target)

    return check


async def check_catalog(config: MeshConfig) -> CheckResult:
    """The catalog PANTREE_CATALOG names can be read; the Complete Journey one is not built here
    (that takes about 30 s), only reported as missing."""
    name = "catalog"
    choice = config.catalog.catalog
    if choice == "completejourney" and not catalog_file(config.vectors.data_dir).is_file():
        return CheckResult(
            name,
            Status.DEGRADED,
            f"{catalog_file(config.vectors.data_dir)} is not built yet: the first start builds it "
            "(about 30 s), or run `pantree catalog build`",
        )
    try:
        opened = await asyncio.to_thread(open_catalog, choice, config.vectors.data_dir)
    except ConfigError as exc:
        return CheckResult(name, Status.FAILED, exc.message)
    detail = (
        f"{opened.source}: {len(opened.products)} products, {len(opened.categories)} "
        f"categories, {len(opened.calibration.rhythms)} fitted rhythms (PANTREE_CATALOG={choice})"
    )
    return CheckResult(name, Status.OK, detail)


def _sample_candidate() -> insights_pb.Candidate:
    """Whole milk bought weekly, with a similar product: what the language-model check asks
    about (from the built-in catalog, so it needs no catalog file)."""
    products = builtin_catalog().by_id
    return insights_pb.Candidate(
        product=products["p-1001"].to_proto(),
        statistics=analysis_pb2.ItemStatistics(
            product_id="p-1001",
            purchase_days=8,
            mean_interval_days=7,
            median_interval_days=7,
            std_interval_days=1,
            coefficient_of_variation=0.14,
            days_since_last_purchase=3,
        ),
        similar_products=[
            product_pb2.ProductMatch(product=products["p-1002"].to_proto(), similarity=0.9)
        ],
    )


async def check_language_model(config: MeshConfig) -> CheckResult:
    """The model PANTREE_LLM_BASE_URL names explains a sample product within PANTREE_LLM_TIMEOUT_S
    and its reply passes the insights step's checks. Not configured is fine (insights are then
    rule-based by design); a model that fails or is rejected is degraded: the rules stand in."""
    name = "language model"
    settings = config.insights
    if not settings.llm_enabled:
        return CheckResult(
            name,
            Status.OK,
            "not configured (PANTREE_LLM_BASE_URL is empty): insights are rule-based",
        )
    try:
        path = connect(settings)
    except ConfigError as exc:
        return CheckResult(name, Status.FAILED, exc.message)
    candidate = _sample_candidate()
    [plain] = enrich([candidate], "")
    started = time.monotonic()
    try:
        answer = await path.explain(candidate, plain, None, (), started + settings.llm_timeout_s)
    finally:
        await path.close()
    where = f"{settings.llm_model} at {settings.llm_base_url}"
    if isinstance(answer, Rejection):
        return CheckResult(
            name,
            Status.DEGRADED,
            f"{where}: {answer.reason}: {answer.detail} (rule-based insights stand in)",
        )
    elapsed = time.monotonic() - started
    return CheckResult(
        name, Status.OK, f"{where} explained a sample product in {elapsed:.1f} s, reply accepted"
    )


def local_checks(target: str | None) -> list[tuple[str, Check]]:
    """Checks of this machine's configuration. With a target the running server owns the vector
    store, so its VectorService health stands in for opening the store here."""
    checks: list[tuple[str, Check]] = [
        ("data directory", check_data_dir),
        ("catalog", check_catalog),
        ("embedder", check_embedder),
        ("language model", check_language_model),
    ]
    if target is None:
        checks.append(("vector store", check_vector_store))
    return checks


def mesh_checks(target: str) -> list[tuple[str, Check]]:
    """Health of the server at `target` and of each step's service on it, and its version."""
    checks: list[tuple[str, Check]] = [("server", _health(target, "server", ""))]
    for step in STEPS:
        name = f"{step} service"
        checks.append((name, _health(target, name, SERVICES[step].full_name)))
    checks.append(("server version", _version(target)))
    return checks


async def _guarded(name: str, check: Check, config: MeshConfig) -> CheckResult:
    try:
        return await check(config)
    except Exception as exc:  # a bug or an unforeseen failure is a result, never a crash
        return CheckResult(name, Status.FAILED, f"unexpected {type(exc).__name__}: {exc}")


async def run_checks(target: str | None, environ: Mapping[str, str] | None = None) -> Report:
    """Every check that applies, concurrently, in a stable order. Without a configuration the
    local checks cannot run; the mesh checks still do, with default client settings."""
    loaded, config = load_configuration(environ)
    checks = local_checks(target) if config is not None else []
    if target is not None:
        checks += mesh_checks(target)
    results = await asyncio.gather(
        *(_guarded(name, check, config or MeshConfig()) for name, check in checks)
    )
    return Report((loaded, *results))


_MARKS = {
    Status.OK: "[green]✓ ok[/green]",
    Status.DEGRADED: "[yellow]! degraded[/yellow]",
    Status.FAILED: "[red]✗ failed[/red]",
}


def render(console: Console, report: Report) -> None:
    """The report as a table, then one line saying whether everything needed works."""
    table = Table(title="pantree doctor", title_justify="left")
    table.add_column("check", style="bold", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("detail", overflow="fold")
    for check in report.checks:
        # Details quote paths and server messages: plain Text, never parsed as markup.
        table.add_row(check.name, _MARKS[check.status], Text(check.detail))
    console.print(table)
    failed = sum(1 for c in report.checks if c.status is Status.FAILED)
    degraded = sum(1 for c in report.checks if c.status is Status.DEGRADED)
    if failed:
        console.print(f"[red]{failed} failed[/red], {degraded} degraded")
    elif degraded:
        console.print(f"[yellow]everything needed works; {degraded} degraded[/yellow]")
    else:
        console.print("[green]everything works[/green]")
