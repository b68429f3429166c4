"""Where product and customer-profile vectors live: a Protocol and its Milvus implementation.

One implementation, MilvusStore, serves both deployments through the same MilvusClient calls:
Milvus Lite (a local file, PANTREE_DATA_DIR/milvus.db, the default) and a Milvus server
(PANTREE_MILVUS_URI=http://host:19530). docs/VECTOR_STORE.md describes the collections, their
index and what a restart of either keeps; the limits below are what keeps every request small.

- Collections: `<prefix>_products` (product_id VARCHAR primary key, vector FLOAT_VECTOR(dim),
  name, category, department VARCHAR, unit_price_usd DOUBLE) and `<prefix>_customer_profiles`
  (customer_id VARCHAR primary key, vector FLOAT_VECTOR(dim), product_count INT64); no dynamic
  fields; VARCHAR lengths are the domain's character limits times 4 (UTF-8 bytes).
- Index: IVF_FLAT (nlist 256, nprobe 16; DEFAULT_INDEX) with the IP metric on both `vector`
  fields; another IndexSpec (EXACT: FLAT) can be given for new collections. The store
  L2-normalises every vector it writes or searches with, so IP is the cosine similarity, in
  [-1, 1], higher is closer. An existing collection keeps its index; its metric is read when it
  is opened (collections made before IP use COSINE).
- Hits: one search request asks for at most MILVUS_MAX_HITS hits in all (Milvus's own cap on
  topk and on nq); the vectors service caps what callers may ask well below that (MAX_TOP_K
  hits for at most MAX_QUERIES texts, services/vectors/index.py).
- Message size: upserts, id lookups and query vectors go in chunks sized to stay under
  MAX_REQUEST_BYTES, a quarter of Milvus's 64 MB gRPC message limit, whatever the dimensions.
- Deadlines: every Milvus call runs under `timeout_s` (a search or a write: or what the gRPC
  call it serves has left, if less); pymilvus retries a lost connection within that deadline.
- Reconnect: when a call still fails because the connection broke (server restarted, Lite
  server gone) or because the collection is not loaded (what a restarted server answers until
  it has loaded it again), the store opens a new client, loads its collections and runs the
  call once more. Every call the store makes after start-up is idempotent (upsert, flush,
  query, search), so the retry cannot apply anything twice.
- Consistency: reads use Session consistency: a search sees every write this store made
  before it (read-your-writes), without waiting for the server's next time tick as Strong does
  on every read (proxy.timeTickInterval, 200 ms by default). Writes of other processes (another
  replica of the service) show up once the server has applied them, without a guarantee.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import grpc
import numpy as np
from milvus_lite.server_manager import server_manager_instance
from numpy.typing import NDArray
from pymilvus import DataType, MilvusClient, MilvusException
from pymilvus.client.types import Status

from pantree_common import context
from pantree_common.domain.history import (
    MAX_CATEGORY_CHARS,
    MAX_ID_CHARS,
    MAX_NAME_CHARS,
    Product,
)
from pantree_common.errors import ConfigError, FailedPrecondition, Unavailable

log = logging.getLogger(__name__)

MIN_CALL_TIMEOUT_S = 0.001
"""Least timeout a Milvus call gets (never zero or negative, whatever the caller has left)."""

# Milvus caps both the hits per query (topk) and the queries per request (nq) at 16,384. One
# request here asks for at most this many hits in all: under 35 MB even with every text field at
# its longest, so below Milvus's 64 MB message limit.
MILVUS_MAX_HITS = 16_384
# Rows per upsert and ids per lookup, at most.
CHUNK_ROWS = 1_000
# Milvus Lite keeps every row written since its last flush in memory, rows that a later upsert
# replaced included, until 128 MiB of Arrow buffers per collection (about three times that in
# resident memory): a server writing a profile per ProcessSeed grew by about 40 MiB an hour
# (docs/RELIABILITY.md, soak). The store flushes a Lite file's profiles once this many bytes of
# profile vectors were written since its last flush (1,024 profiles of 256 dimensions); a
# Milvus server flushes on its own. Products are written when a catalog is indexed, not per
# request, and keep Milvus Lite's own budget.
LITE_PROFILE_FLUSH_BYTES = 2**20
# What one request may carry: a quarter of Milvus's 64 MB gRPC message limit.
MAX_REQUEST_BYTES = 16 * 2**20
# Milvus sizes VARCHAR in UTF-8 bytes; the domain limits count characters (up to 4 bytes each).
_UTF8_MAX = 4
# The longest product row apart from its vector: the VARCHAR fields at their longest, the price.
_PRODUCT_TEXT_BYTES = (MAX_ID_CHARS + MAX_NAME_CHARS + 2 * MAX_CATEGORY_CHARS) * _UTF8_MAX + 8
# Milvus's answer to a read of a collection that is not loaded (a restarted server says so
# until it has loaded the collection again).
_COLLECTION_NOT_LOADED = 101
_READ_CONSISTENCY = "Session"
# The metric of new collections: inner product. The store L2-normalises every vector it writes
# or searches with, so the inner product is the cosine similarity; Milvus Lite's COSINE
# re-normalises every stored vector on each search (about twice the time on 92k products).
METRIC = "IP"
SERVER_SCHEMES = ("http://", "https://", "tcp://", "unix:")
# The primary key is asked for too: a Milvus 2.3 server does not name it in search results.
_PRODUCT_FIELDS = ["product_id", "name", "category", "department", "unit_price_usd"]

T = TypeVar("T")


@dataclass(frozen=True)
class IndexSpec:
    """The vector index of new collections, and the parameters searches pass to it."""

    index_type: str = "FLAT"
    build_params: Mapping[str, Any] = field(default_factory=dict)
    search_params: Mapping[str, Any] = field(default_factory=dict)


# Exact search: every stored vector is compared with every query.
EXACT = IndexSpec()
# The default for new collections: 256 k-means lists, 16 of them scanned per query. On the 92k
# Complete Journey catalog it finds 95-96% of the exact top 10-50 in about half the time of
# EXACT on Milvus Lite (docs/VECTOR_STORE.md, "Index"); collections too small to fill a query
# from 16 lists are searched exhaustively (search_products).
IVF = IndexSpec("IVF_FLAT", {"nlist": 256}, {"nprobe": 16})
DEFAULT_INDEX = IVF


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


def _unit_rows(vectors: NDArray[np.float32]) -> NDArray[np.float32]:
    """The rows scaled to length 1 (zero rows stay zero), as float32."""
    rows = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    unit: NDArray[np.float32] = np.divide(rows, norms, out=np.zeros_like(rows), where=norms > 0)
    return unit


def _chunks(items: Sequence[T], size: int = CHUNK_ROWS) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class MilvusStore:
    """VectorStore on Milvus: a Milvus Lite data file (a local path ending in .db) or a server
    (http(s)://host:19530), through the same MilvusClient calls.

    Milvus Lite lets one process hold a data file, and close() releases it, so open one store
    per file per process. The store is safe to use from several threads; its client is its own
    (not shared with other stores of the process), so close() really closes the connection.
    """

    def __init__(
        self,
        uri: str,
        dimensions: int,
        *,
        token: str = "",
        timeout_s: float = 10.0,
        collection_prefix: str = "pantree",
        index: IndexSpec = DEFAULT_INDEX,
    ) -> None:
        self._timeout_s = timeout_s
        self._index = index
        self._dimensions = dimensions
        self._token = token
        self._products = f"{collection_prefix}_products"
        self._profiles = f"{collection_prefix}_customer_profiles"
        self._lite_path: str | None = None
        if not uri.startswith(SERVER_SCHEMES):
            if not uri.endswith(".db"):
                raise ConfigError(f"a Milvus Lite path must end in .db, got {uri!r}")
            Path(uri).expanduser().parent.mkdir(parents=True, exist_ok=True)
            uri = self._lite_path = str(Path(uri).expanduser())
        self._uri = uri
        where = "Milvus Lite file" if self._lite_path else "Milvus server"
        self._where = f"{where} {uri}"
        # Rows of one upsert request: CHUNK_ROWS, fewer when long vectors would pass the budget.
        row_bytes = 4 * dimensions + _PRODUCT_TEXT_BYTES
        self._chunk_rows = max(1, min(CHUNK_ROWS, MAX_REQUEST_BYTES // row_bytes))
        self._reconnect_lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._unflushed_profile_bytes = 0
        self._generation = 0  # how many times the client was replaced
        self.reconnects = 0
        """How many times the store replaced its client after a failure."""
        self._client: MilvusClient = self._connect()
        try:
            self._open_collections()
        except Exception:
            self.close()
            raise

    def _connect(self) -> MilvusClient:
        # dedicated: pymilvus otherwise shares one channel between the clients of a process that
        # dial the same address, and neither close() nor a reconnect would replace it.
        client: MilvusClient = self._call(
            "connect", MilvusClient, uri=self._uri, token=self._token, dedicated=True
        )
        return client

    def _open_collections(self) -> None:
        """Create or check both collections, then load them: a reopened collection starts
        released (on a restarted server, not yet reloaded). Both loads are started before
        waiting for either, since a server takes a second or two for each."""
        self._product_metric = self._open_collection(self._products, self._product_schema())
        self._open_collection(self._profiles, self._profile_schema())
        for name in (self._products, self._profiles):
            self._call("load collection", self._client.load_collection, name, _async=True)
        for name in (self._products, self._profiles):
            self._call("load collection", self._client.load_collection, name)

    def _call(
        self,
        action: str,
        call: Callable[..., T],
        *args: Any,
        timeout_s: float | None = None,
        **kwargs: Any,
    ) -> T:
        """Run one Milvus call under `timeout_s` (the store's deadline by default), reporting a
        failure as Unavailable."""
        timeout = self._timeout_s if timeout_s is None else timeout_s
        try:
            return call(*args, timeout=timeout, **kwargs)
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

    def _request_timeout(self) -> float:
        """The store's deadline, shortened to what the gRPC call being served has left (its
        context follows it into worker threads): a call whose caller gave up frees its thread
        instead of holding it for the whole timeout. Reconnects keep the full deadline."""
        remaining = context.remaining_seconds()
        if remaining is None:
            return self._timeout_s
        return max(MIN_CALL_TIMEOUT_S, min(self._timeout_s, remaining))

    def _run(self, action: str, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call the client's idempotent `method`; if that fails because the connection broke or
        the collection is not loaded, reconnect once and call it again."""
        client, generation = self._client, self._generation
        kwargs["timeout_s"] = self._request_timeout()
        try:
            return self._call(action, getattr(client, method), *args, **kwargs)
        except Unavailable as error:
            if not _worth_reconnecting(error.__cause__):
                raise
            log.warning("%s; reconnecting", error)
            try:
                self._reconnect(generation)
            except Unavailable as failed:
                raise Unavailable(f"{error}; reconnecting failed too") from failed
        except ValueError:
            # grpc refuses a call on a closed channel with ValueError: another thread replaced
            # (and closed) the client while this call was on it.
            if self._generation == generation:
                raise
        kwargs["timeout_s"] = self._request_timeout()
        return self._call(action, getattr(self._client, method), *args, **kwargs)

    def _reconnect(self, generation: int) -> None:
        """Replace the client and load the collections again, unless another thread already
        did since `generation`. If no new connection can be made, the old client stays (the
        next call tries again); Unavailable says why."""
        with self._reconnect_lock:
            if self._generation != generation:
                return
            if self._lite_path is not None:
                # The in-process Lite server may be the broken part: the next client starts a
                # fresh one on the same file.
                server_manager_instance.release_server(self._lite_path)
            client = self._connect()
            old, self._client = self._client, client
            self._generation += 1
            self.reconnects += 1
            with contextlib.suppress(Exception):
                old.close()
            log.info("vector store: reconnected to %s", self._where)
            self._open_collections()

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

    def _open_collection(self, name: str, schema: Any) -> str:
        """Create the collection, or reuse it when its vectors have our dimensions; returns the
        metric of its vector index (collections made before IP was chosen use COSINE)."""
        metric = METRIC
        if self._call("check collection", self._client.has_collection, name):
            description = self._call("describe collection", self._client.describe_collection, name)
            dims = {f["name"]: f.get("params", {}).get("dim") for f in description["fields"]}
            if dims.get("vector") != self._dimensions:
                raise FailedPrecondition(
                    f"vector store: collection {name} on {self._where} holds vectors of "
                    f"{dims.get('vector')} dimensions, the embedder makes {self._dimensions}; "
                    "use a fresh store or another collection prefix"
                )
            indexed = self._call(
                "describe index", self._client.describe_index, name, index_name="vector"
            )
            metric = str((indexed or {}).get("metric_type", METRIC))
        else:
            self._call(
                "create collection",
                self._client.create_collection,
                name,
                schema=schema,
                consistency_level="Strong",
            )
            index = MilvusClient.prepare_index_params()
            index.add_index(
                field_name="vector",
                index_type=self._index.index_type,
                metric_type=METRIC,
                params=dict(self._index.build_params),
            )
            # sync=False: pymilvus would poll the build every 0.5 s; an empty index is ready now.
            self._call("create index", self._client.create_index, name, index, sync=False)
            log.info("created collection %s on %s", name, self._where)
        return metric

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
            for p, v in zip(products, _unit_rows(vectors).tolist(), strict=True)
        ]
        for chunk in _chunks(rows, self._chunk_rows):
            self._run("upsert products", "upsert", self._products, list(chunk))

    def count_products(self) -> int:
        rows = self._run(
            "count products",
            "query",
            self._products,
            filter="",
            output_fields=["count(*)"],
            consistency_level=_READ_CONSISTENCY,
        )
        return int(rows[0]["count(*)"])

    def existing_product_ids(self, product_ids: Collection[str]) -> set[str]:
        found: set[str] = set()
        for chunk in _chunks(sorted(set(product_ids))):
            expression = f"product_id in [{', '.join(_string_literal(i) for i in chunk)}]"
            rows = self._run(
                "look up products",
                "query",
                self._products,
                filter=expression,
                output_fields=["product_id"],
                consistency_level=_READ_CONSISTENCY,
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
        queries_per_request = min(
            MILVUS_MAX_HITS // limit, MAX_REQUEST_BYTES // (4 * self._dimensions)
        )
        found: list[list[StoredMatch]] = []
        for chunk in _chunks(_unit_rows(vectors).tolist(), queries_per_request):
            hits = list(self._search(list(chunk), limit, self._search_params(limit)))
            # An IVF search scans nprobe lists, which on a small collection hold fewer rows than
            # asked for (Milvus Lite trains at most one list per row): ask those queries again
            # with every list scanned. On a large collection every query fills its limit.
            short = [i for i, query_hits in enumerate(hits) if len(query_hits) < limit]
            exhaustive = self._exhaustive_params()
            if short and exhaustive is not None:
                again = self._search([chunk[i] for i in short], limit, exhaustive)
                for i, query_hits in zip(short, again, strict=True):
                    hits[i] = query_hits
            found.extend(_matches(query_hits, excluded, top_k) for query_hits in hits)
        return found

    def _search(
        self, queries: list[list[float]], limit: int, params: dict[str, Any]
    ) -> Sequence[Sequence[Any]]:
        hits: Sequence[Sequence[Any]] = self._run(
            "search products",
            "search",
            self._products,
            data=queries,
            limit=limit,
            output_fields=_PRODUCT_FIELDS,
            search_params=params,
            consistency_level=_READ_CONSISTENCY,
        )
        return hits

    def _search_params(self, limit: int) -> dict[str, Any]:
        params = dict(self._index.search_params)
        if "ef" in params:  # HNSW explores at least as many candidates as it returns
            params["ef"] = max(int(params["ef"]), limit)
        return {"metric_type": self._product_metric, "params": params}

    def _exhaustive_params(self) -> dict[str, Any] | None:
        """Search parameters that scan every IVF list, or None for other indexes."""
        params = dict(self._index.search_params)
        if "nprobe" not in params:
            return None
        params["nprobe"] = int(self._index.build_params.get("nlist", params["nprobe"]))
        return {"metric_type": self._product_metric, "params": params}

    def upsert_profiles(self, profiles: Sequence[StoredProfile]) -> None:
        # One row per customer (the last one wins): a batch may not repeat a primary key.
        latest = {profile.customer_id: profile for profile in profiles}
        rows = [
            {
                "customer_id": p.customer_id,
                "vector": _unit_rows(p.vector[np.newaxis])[0].tolist(),
                "product_count": p.product_count,
            }
            for p in latest.values()
        ]
        for chunk in _chunks(rows, self._chunk_rows):
            self._run("upsert profiles", "upsert", self._profiles, list(chunk))
        if self._lite_path is not None:
            self._count_lite_profiles(len(rows))

    def _count_lite_profiles(self, rows: int) -> None:
        """Flush the profiles of a Lite file once LITE_PROFILE_FLUSH_BYTES of vectors were
        written since the last flush."""
        with self._flush_lock:
            self._unflushed_profile_bytes += rows * 4 * self._dimensions
            if self._unflushed_profile_bytes < LITE_PROFILE_FLUSH_BYTES:
                return
            self._unflushed_profile_bytes = 0
        self._run("flush profiles", "flush", self._profiles)

    def get_profile(self, customer_id: str) -> NDArray[np.float32] | None:
        rows = self._run(
            "get profile",
            "query",
            self._profiles,
            filter=f"customer_id == {_string_literal(customer_id)}",
            output_fields=["vector"],
            consistency_level=_READ_CONSISTENCY,
        )
        return np.asarray(rows[0]["vector"], dtype=np.float32) if rows else None

    def close(self) -> None:
        """Disconnect and, for Milvus Lite, stop its in-process server so the file is free."""
        with contextlib.suppress(Exception):  # a broken connection is closed all the same
            self._client.close()
        if self._lite_path is not None:
            server_manager_instance.release_server(self._lite_path)


def _worth_reconnecting(error: BaseException | None) -> bool:
    """Whether a failed call may succeed on a new connection: the connection broke (gRPC
    UNAVAILABLE, pymilvus's connect failure, a closed channel) or a restarted server has not
    loaded the collection yet."""
    if isinstance(error, grpc.RpcError):
        return bool(getattr(error, "code", lambda: None)() == grpc.StatusCode.UNAVAILABLE)
    if isinstance(error, MilvusException):
        code = error.code
        return code in (Status.CONNECT_FAILED, _COLLECTION_NOT_LOADED) or (
            code == grpc.StatusCode.UNAVAILABLE  # pymilvus's retries ran out of time
        )
    return False


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
