"""Data safety of the vectors service: what it stored is there after it restarts.

The service runs on a real gRPC server (port 0, as in tests/service) over Milvus Lite in
PANTREE_DATA_DIR, or over the session's Milvus server (PANTREE_MILVUS_URI); it is stopped and a
new one is started on the same configuration.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pantree.domain.v1 import product_pb2
from pantree.vectors.v1 import vectors_service_pb2 as pb
from pantree.vectors.v1.vectors_service_pb2_grpc import VectorServiceStub

from services.vectors.embedders import collection_prefix, load_embedder
from services.vectors.store import MilvusStore
from tests.histories import rhythmic_history
from tests.milvus_server import MilvusServer, drop_collections
from tests.service.conftest import mesh_config, start_mesh, stop_mesh

RYE = product_pb2.Product(product_id="x-rye", name="Dark Rye Bread Loaf", category="bakery")


@pytest.fixture(params=["lite", "server"])
def milvus_env(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """The service's Milvus settings: none (Lite in the data dir) or the session's server."""
    if request.param == "lite":
        yield {}
        return
    server: MilvusServer = request.getfixturevalue("milvus_server")
    yield {"PANTREE_MILVUS_URI": server.uri}
    drop_collections(server.uri, "pantree_")  # the service's default collection prefix


async def test_products_and_profiles_survive_a_restart(
    tmp_path: Path, milvus_env: dict[str, str]
) -> None:
    data_dir = tmp_path / "data"
    mesh = await start_mesh(data_dir, steps=["vectors"], **milvus_env)
    try:
        stub = VectorServiceStub(mesh.channel)
        await stub.IndexProducts(pb.IndexProductsRequest(products=[RYE]), timeout=30)
        profile = await stub.UpsertCustomerProfile(
            pb.UpsertCustomerProfileRequest(history=rhythmic_history("restart-shopper")),
            timeout=30,
        )
    finally:
        await stop_mesh(mesh)
    assert profile.product_count == 4

    mesh = await start_mesh(data_dir, steps=["vectors"], **milvus_env)
    try:
        stub = VectorServiceStub(mesh.channel)
        found = await stub.SearchSimilarProducts(
            pb.SearchSimilarProductsRequest(query_texts=["dark rye bread"], top_k=3), timeout=30
        )
    finally:
        await stop_mesh(mesh)
    assert found.results[0].matches[0].product == RYE

    # No RPC reads a profile back: open the store the service used, now that it has stopped.
    settings = mesh_config(data_dir, **milvus_env).vectors
    embedder = load_embedder(settings)
    store = MilvusStore(
        settings.store_uri, embedder.dimensions, collection_prefix=collection_prefix(embedder)
    )
    try:
        vector = store.get_profile("restart-shopper")
    finally:
        store.close()
    assert vector is not None
    assert vector.shape == (embedder.dimensions,)
