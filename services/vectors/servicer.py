"""gRPC adapter of the vectors step: the store's blocking calls run in worker threads."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from pantree.vectors.v1 import vectors_service_pb2 as pb
from pantree.vectors.v1 import vectors_service_pb2_grpc as pb_grpc

from pantree_common.domain import catalog
from pantree_common.domain.dates import today_epoch_day
from pantree_common.domain.history import history_from_proto
from pantree_common.errors import FailedPrecondition
from pantree_common.server import Context
from services.vectors.batching import GroupCommit
from services.vectors.index import (
    MAX_TOP_K,
    VectorIndex,
    popular_first,
    validate_products,
    validate_search,
)
from services.vectors.store import StoredProfile


class VectorServicer(pb_grpc.VectorServiceServicer):
    def __init__(
        self, open_index: Callable[[], VectorIndex], today: Callable[[], int] = today_epoch_day
    ) -> None:
        self._open_index = open_index
        self._index: VectorIndex | None = None
        self._profiles: GroupCommit[StoredProfile] | None = None
        self._today = today

    async def start(self) -> None:
        """Open the store and make sure the built-in catalog is searchable."""
        index = await asyncio.to_thread(self._open_index)
        await asyncio.to_thread(index.ensure_catalog, catalog.products())
        self._profiles = GroupCommit(lambda batch: asyncio.to_thread(index.store_profiles, batch))
        self._index = index

    async def close(self) -> None:
        if self._profiles is not None:
            await self._profiles.drain()
        if self._index is not None:
            index, self._index = self._index, None
            await asyncio.to_thread(index.close)

    @property
    def index(self) -> VectorIndex:
        if self._index is None:
            raise FailedPrecondition("the vector store is not open yet")
        return self._index

    @property
    def profile_writer(self) -> GroupCommit[StoredProfile]:
        if self._profiles is None:
            raise FailedPrecondition("the vector store is not open yet")
        return self._profiles

    async def IndexProducts(
        self, request: pb.IndexProductsRequest, context: Context
    ) -> pb.IndexProductsResponse:
        products = validate_products(request.products)
        indexed, total = await asyncio.to_thread(self.index.index_products, products)
        return pb.IndexProductsResponse(indexed_count=indexed, total_count=total)

    async def UpsertCustomerProfile(
        self, request: pb.UpsertCustomerProfileRequest, context: Context
    ) -> pb.UpsertCustomerProfileResponse:
        # A profile summarises whatever was bought, so no purchase counts as "in the future".
        last_day = max(request.history.purchase_epoch_days, default=0)
        history = history_from_proto(
            request.history, as_of_epoch_day=max(self._today(), last_day), require_customer=True
        )
        index = self.index
        profile = await asyncio.to_thread(index.profile, history)
        await self.profile_writer.submit(profile)
        summary = index.summary(profile)
        return pb.UpsertCustomerProfileResponse(
            customer_id=summary.customer_id,
            dimensions=summary.dimensions,
            product_count=summary.product_count,
        )

    async def SearchSimilarProducts(
        self, request: pb.SearchSimilarProductsRequest, context: Context
    ) -> pb.SearchSimilarProductsResponse:
        weight = request.popularity_weight
        top_k = validate_search(
            request.query_texts, request.top_k, request.exclude_product_ids, weight
        )
        texts, excluded = list(request.query_texts), set(request.exclude_product_ids)
        depth = MAX_TOP_K if weight else top_k
        found = self.index.cached(texts, depth, excluded)
        if found is None:  # embedding and the store block: not on the event loop
            found = await asyncio.to_thread(self.index.search, texts, depth, excluded)
        if weight:
            rank = catalog.active_catalog().rank
            found = [popular_first(matches, rank, weight, top_k) for matches in found]
        response = pb.SearchSimilarProductsResponse()
        for text, matches in zip(request.query_texts, found, strict=True):
            add = response.results.add(query_text=text).matches.add
            for m in matches:  # built in place: a seed's search answers 1,000 matches
                add(product=m.product.proto_fields(), similarity=m.similarity)
        return response
