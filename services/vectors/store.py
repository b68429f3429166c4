"""Where product and customer-profile vectors live: a Protocol and its Milvus implementation."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import grpc
import numpy as np
from milvus_lite.server_manager import server_manager_instance
from numpy.typing import NDArray
from pymilvus import DataType, MilvusClient, MilvusException

from pantree_common.domain.history import (
    MAX_CATEGORY_CHARS,
    MAX_ID_CHARS,
    MAX_NAME_CHARS,
    Product,
)
from pantree_common.errors import ConfigError, FailedPrecondition, Unavailable

log = logging.getLogger(__name__)

# Milvus caps both the hits per query (topk) and the queries per request (nq) at 16,384. One
# request here asks for at most this many hits in all: under 35 MB even with every text field at
# its longest, so below Milvus's 64 MB message limit.
MILVUS_MAX_HITS = 16_384
# Rows per upsert and ids per lookup: 1,000 rows of 4 KiB vectors is about 4 MB a message.
CHUNK_ROWS = 1_000
# Milvus sizes VARCHAR in UTF-8 bytes; the domain limits count characters (up to 4 bytes each).
_UTF8_MAX = 4
SERVER_SCHEMES = ("http://", "https://", "tcp://", "unix:")
_PRODUCT_FIELDS = ["name", "category", "department", "unit_price_usd"]

T = TypeVar("T")


@dataclass(frozen=True)
class StoredMatch:
    """A stored product and its cosine similarity to the query (higher is closer)."""

    product: Product
    similarity: float


@dataclass(frozen=True, eq=False)
class StoredProfile:
    """A customer's purchase-pattern vector and how many products it summarises."""

    customer_id: str
    vector: NDArray[np.float32]
    product_count: int


class VectorStore(Protocol):
    """What VectorIndex needs from a vector database; vectors are L2-normalised float32 rows."""

    def upsert_products(self, products: Sequence[Product], vectors: NDArray[np.float32]) -> None:
        """Store products (row i of `vectors` is products[i]), replacing those with the same id."""
        ...

    def count_products(self) -> int: ...

    def existing_product_ids(self, product_ids: Collection[str]) -> set[str]:
        """The subset of `product_ids` that is stored."""
        ...

    def search_products(
        self, vectors: NDArray[np.float32], top_k: int, exclude_ids: Collection[str]
    ) -> list[list[StoredMatch]]:
        """One list per query row, best first, at most top_k each, never an excluded id."""
        ...

    def upsert_profiles(self, profiles: Sequence[StoredProfile]) -> None: ...

    def get_profile(self, customer_id: str) -> NDArray[np.float32] | None: ...

    def close(self) -> None: ...


def _string_literal(value: str) -> str:
    """`value` as a quoted Milvus filter literal.

    Milvus Lite supports no filter templates and pymilvus's `get(ids=...)` does not escape
    quotes, so id lookups build the literal here; these escapes parse the same on Milvus Lite
    and on a server.
    """
    escaped = (
        value.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("\t", "\\t")
    )
    return f'"{escaped}"'


def _chunks(items: Sequence[T], size: int = CHUNK_ROWS) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class MilvusStore:
    """VectorStore on Milvus: a Milvus Lite data file (a local path ending in .db) or a server
    (http(s)://host:19530), through the same MilvusClient calls.

    Milvus Lite lets one process hold a data file, and close() releases it, so open one store
    per file per process.
    """

    def __init__(
        self,
        uri: str,
        dimensions: int,
        *,
        token: str = "",
        timeout_s: float = 10.0,
        collection_prefix: str = "pantree",
    ) -> None:
        self._timeout_s = timeout_s
        self._dimensions = dimensions
        self._products = f"{collection_prefix}_products"
        self._profiles = f"{collection_prefix}_customer_profiles"
        self._lite_path: str | None = None
        if not uri.startswith(SERVER_SCHEMES):
            if not uri.endswith(".db"):
                raise ConfigError(f"a Milvus Lite path must end in .db, got {uri!r}")
            Path(uri).expanduser().parent.mkdir(parents=True, exist_ok=True)
            uri = self._lite_path = str(Path(uri).expanduser())
        where = "Milvus Lite file" if self._lite_path else "Milvus server"
        self._where = f"{where} {uri}"
        self._client: MilvusClient = self._call("connect", MilvusClient, uri=uri, token=token)
        try:
            self._open_collection(self._products, self._product_schema())
            self._open_collection(self._profiles, self._profile_schema())
        except Exception:
            self.close()
            raise

    def _call(self, action: str, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run one Milvus call under the store's deadline, reporting a failure as Unavailable."""
        try:
            return call(*args, timeout=self._timeout_s, **kwargs)
        except (MilvusException, grpc.RpcError, grpc.FutureTimeoutError) as error:
            # pymilvus lets a deadline or an authentication failure through as a raw grpc error.
            detail = error.message if isinstance(error, MilvusException) else repr(error)
            hint = (
                " (is another process using it? Milvus Lite allows one per data file)"
                if self._lite_path and action == "connect"
                else ""
            )
            raise Unavailable(
                f"vector store: {action} failed on {self._where}: {detail}{hint}"
            ) from error

    def _product_schema(self) -> Any:
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field(
            "product_id", DataType.VARCHAR, is_primary=True, max_length=MAX_ID_CHARS * _UTF8_MAX
        )
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self._dimensions)
        schema.add_field("name", DataType.VARCHAR, max_length=MAX_NAME_CHARS * _UTF8_MAX)
        schema.add_field("category", DataType.VARCHAR, max_length=MAX_CATEGORY_CHARS * _UTF8_MAX)
        schema.add_field("department", DataType.VARCHAR, max_length=MAX_CATEGORY_CHARS * _UTF8_MAX)
        schema.add_field("unit_price_usd", DataType.DOUBLE)
        return schema

    def _profile_schema(self) -> Any:
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field(
            "customer_id", DataType.VARCHAR, is_primary=True, max_length=MAX_ID_CHARS * _UTF8_MAX
        )
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self._dimensions)
        schema.add_field("product_count", DataType.INT64)
        return schema

    def _open_collection(self, name: str, schema: Any) -> None:
        """Create the collection, or reuse it when its vectors have our dimensions.

        Strong consistency makes every upsert visible to the next search on a server (Milvus
        Lite always reads its own writes). A reopened collection starts released, so load it.
        """
        if self._call("check collection", self._client.has_collection, name):
            description = self._call("describe collection", self._client.describe_collection, name)
            dims = {f["name"]: f.get("params", {}).get("dim") for f in description["fields"]}
            if dims.get("vector") != self._dimensions:
                raise FailedPrecondition(
                    f"vector store: collection {name} on {self._where} holds vectors of "
                    f"{dims.get('vector')} dimensions, the embedder makes {self._dimensions}; "
                    "use a fresh store or another collection prefix"
                )
        else:
            self._call(
                "create collection",
                self._client.create_collection,
                name,
                schema=schema,
                consistency_level="Strong",
            )
            index = MilvusClient.prepare_index_params()
            # FLAT is exact and works on Milvus Lite and servers; catalogs are small enough.
            index.add_index(field_name="vector", index_type="FLAT", metric_type="COSINE")
            # sync=False: pymilvus would poll the build every 0.5 s; an empty index is ready now.
            self._call("create index", self._client.create_index, name, index, sync=False)
            log.info("created collection %s on %s", name, self._where)
        self._call("load collection", self._client.load_collection, name)

    def upsert_products(self, products: Sequence[Product], vectors: NDArray[np.float32]) -> None:
        rows = [
            {
                "product_id": p.product_id,
                "vector": v,
                "name": p.name,
                "category": p.category,
                "department": p.department,
                "unit_price_usd": p.unit_price_usd,
            }
            for p, v in zip(products, vectors.tolist(), strict=True)
        ]
        for chunk in _chunks(rows):
            self._call("upsert products", self._client.upsert, self._products, list(chunk))

    def count_products(self) -> int:
        rows = self._call(
            "count products",
            self._client.query,
            self._products,
            filter="",
            output_fields=["count(*)"],
        )
        return int(rows[0]["count(*)"])

    def existing_product_ids(self, product_ids: Collection[str]) -> set[str]:
        found: set[str] = set()
        for chunk in _chunks(sorted(set(product_ids))):
            expression = f"product_id in [{', '.join(_string_literal(i) for i in chunk)}]"
            rows = self._call(
                "look up products",
                self._client.query,
                self._products,
                filter=expression,
                output_fields=["product_id"],
            )
            found.update(row["product_id"] for row in rows)
        return found

    def search_products(
        self, vectors: NDArray[np.float32], top_k: int, exclude_ids: Collection[str]
    ) -> list[list[StoredMatch]]:
        """Exclusions are filtered here, not in a Milvus filter: each query fetches top_k plus
        as many hits as excluded ids could take (at most the stored products), then drops them."""
        if top_k < 1 or len(vectors) == 0:
            return [[] for _ in range(len(vectors))]
        excluded = frozenset(exclude_ids)
        slack = min(len(excluded), self.count_products()) if excluded else 0
        limit = min(top_k + slack, MILVUS_MAX_HITS)
        queries_per_request = MILVUS_MAX_HITS // limit
        found: list[list[StoredMatch]] = []
        for chunk in _chunks(vectors.tolist(), queries_per_request):
            hits = self._call(
                "search products",
                self._client.search,
                self._products,
                data=list(chunk),
                limit=limit,
                output_fields=_PRODUCT_FIELDS,
                search_params={"metric_type": "COSINE"},
            )
            found.extend(_matches(query_hits, excluded, top_k) for query_hits in hits)
        return found

    def upsert_profiles(self, profiles: Sequence[StoredProfile]) -> None:
        # One row per customer (the last one wins): a batch may not repeat a primary key.
        latest = {profile.customer_id: profile for profile in profiles}
        rows = [
            {
                "customer_id": p.customer_id,
                "vector": p.vector.tolist(),
                "product_count": p.product_count,
            }
            for p in latest.values()
        ]
        for chunk in _chunks(rows):
            self._call("upsert profiles", self._client.upsert, self._profiles, list(chunk))

    def get_profile(self, customer_id: str) -> NDArray[np.float32] | None:
        rows = self._call(
            "get profile",
            self._client.query,
            self._profiles,
            filter=f"customer_id == {_string_literal(customer_id)}",
            output_fields=["vector"],
        )
        return np.asarray(rows[0]["vector"], dtype=np.float32) if rows else None

    def close(self) -> None:
        """Disconnect and, for Milvus Lite, stop its in-process server so the file is free."""
        self._client.close()
        if self._lite_path is not None:
            server_manager_instance.release_server(self._lite_path)


def _matches(hits: Sequence[Any], excluded: frozenset[str], top_k: int) -> list[StoredMatch]:
    matches: list[StoredMatch] = []
    for hit in hits:  # {"product_id": ..., "distance": ..., "entity": {output fields}}
        product_id = hit["product_id"]
        if product_id in excluded:
            continue
        entity = hit["entity"]
        product = Product(
            product_id,
            entity["name"],
            entity["category"],
            entity["department"],
            float(entity["unit_price_usd"]),
        )
        matches.append(StoredMatch(product, float(hit["distance"])))
        if len(matches) == top_k:
            break
    return matches
