"""Offers for every shopper of a purchase file, scored in-process: the job behind `pantree batch`.

The batch composes the cores the way Recommend composes the services, without an RPC per
shopper: the frequency statistics (training.pair_table over services.frequency.statistics), the
trained model or, without one, the statistics' heuristic, and the offer terms of
services.recommendation.offers, which scoring.rank uses too. A shopper's rows therefore equal
the offers Recommend returns for the same history, analysis day and max_offers, less what needs
the other steps: related products (the vectors step) are not part of the output, and each
reason is the rhythm sentence Recommend gives. No active subscriptions are known, so the
discount tier counts the shopper's offers of this run.

- Analysis day (`as_of_epoch_day`): the purchases strictly before it count. Default: the day
  after the file's last purchase (of the whole file, so that every shard uses the same day).
- Sharding: a shopper belongs to shard crc32(UTF-8 id) mod shard_count, stable across runs,
  machines and file orders, so the pods of a Kubernetes Indexed Job split the shoppers between
  them (one output file each) without talking to each other.
- Chunks: consecutive shoppers of the shard, at most about CHUNK_EVENTS events each (fewer for
  a small input, so that every worker gets several), vectorised inside a chunk; memory beyond
  the loaded file is bounded by the chunk. Each chunk is one Parquet row group, written to a
  temporary file renamed over the output at the end.

Output: one row per offer, columns as SCHEMA, best offer of a shopper first (rank 1). Shoppers
without an eligible offer have no rows.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
import time
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from numpy.typing import NDArray
from pantree.domain.v1 import offer_pb2
from threadpoolctl import threadpool_limits

from pantree_common.datasets.transactions import Transactions
from pantree_common.domain import dates
from pantree_common.domain.reasons import rhythm_text
from pantree_common.errors import Collector, FailedPrecondition, InvalidArgument
from services.recommendation import offers, training
from services.recommendation.config import MAX_OFFERS, RecommendationConfig
from services.recommendation.features import feature_matrix
from services.recommendation.model import SubscriptionModel

CHUNK_EVENTS = 500_000
"""Purchase events per chunk: a few hundred MB of intermediate arrays at most."""
CHUNKS_PER_WORKER = 4
MAX_WORKERS = 64
SHARD_INDEX_ENV = "JOB_COMPLETION_INDEX"
"""Set by Kubernetes in each pod of an Indexed Job: the default shard index."""
SCHEMA = pa.schema(
    [
        ("customer_id", pa.string()),
        ("rank", pa.int32()),
        ("product_id", pa.string()),
        ("product_name", pa.string()),
        ("category", pa.string()),
        ("score", pa.float64()),
        ("confidence", pa.float64()),
        ("predicted_interval_days", pa.float64()),
        ("delivery_interval_days", pa.int32()),
        ("interval_snap_error_days", pa.float64()),
        ("quantity_per_delivery", pa.float64()),
        ("discount_percent", pa.float64()),
        ("savings_per_delivery_usd", pa.float64()),
        ("monthly_savings_usd", pa.float64()),
        ("yearly_savings_usd", pa.float64()),
        ("first_delivery_date", pa.date32()),
        ("reason", pa.string()),
        ("cold_start", pa.bool_()),
        ("scored_by", pa.string()),
    ]
)
"""The output columns, meaning what the Offer message's fields of the same names mean;
scored_by is `local_model` or `heuristic` (ScoringPath without its prefix)."""


@dataclass(frozen=True)
class BatchOptions:
    """What one run scores and how."""

    as_of_epoch_day: int | None = None
    """None: the day after the last purchase of the file."""
    max_offers: int = 0
    """Offers per shopper, 1-100; 0: the configured default (PANTREE_MAX_OFFERS)."""
    shard_index: int = 0
    shard_count: int = 1
    workers: int = 1
    """Processes scoring chunks side by side (forked, one thread each); 1 scores in this one."""
    chunk_events: int = CHUNK_EVENTS

    @classmethod
    def parse(
        cls,
        *,
        as_of: str,
        max_offers: int,
        shard_index: int | None,
        shard_count: int,
        workers: int,
        environ: Mapping[str, str],
    ) -> BatchOptions:
        """Options from command-line values; the shard index defaults to JOB_COMPLETION_INDEX,
        else 0. Raises InvalidArgument naming every bad value."""
        errors = Collector()
        as_of_day = None
        if as_of:
            try:
                as_of_day = dates.to_epoch_day(dt.date.fromisoformat(as_of))
            except ValueError:
                errors.add("as-of", f"must be a date YYYY-MM-DD, got {as_of!r}")
        if shard_index is None:
            from_env = environ.get(SHARD_INDEX_ENV, "0").strip() or "0"
            try:
                shard_index = int(from_env)
            except ValueError:
                errors.add(SHARD_INDEX_ENV, f"must be a whole number, got {from_env!r}")
                shard_index = 0
        errors.check(
            max_offers == 0 or 1 <= max_offers <= MAX_OFFERS,
            "max-offers",
            f"must be 0 (the configured default) or 1 to {MAX_OFFERS}, got {max_offers}",
        )
        errors.check(shard_count >= 1, "shard-count", f"must be at least 1, got {shard_count}")
        errors.check(
            1 <= workers <= MAX_WORKERS,
            "workers",
            f"must be from 1 to {MAX_WORKERS}, got {workers}",
        )
        errors.check(
            0 <= shard_index < max(shard_count, 1),
            "shard-index",
            f"must be from 0 to shard-count - 1 ({shard_count - 1}), got {shard_index}",
        )
        errors.raise_if_any()
        return cls(as_of_day, max_offers, shard_index, shard_count, workers)


@dataclass(frozen=True)
class BatchResult:
    """What a run wrote."""

    customers: int
    """Shoppers of the shard with purchases before the analysis day."""
    offers: int
    customers_with_offers: int
    as_of_epoch_day: int
    scored_by: str
    seconds: float


def check_output(output: Path) -> None:
    """Refuse an output path that cannot be written before any work is done."""
    if output.is_dir():
        raise InvalidArgument.single("output", f"{output} is a directory, not a file path")
    if not output.parent.is_dir():
        raise InvalidArgument.single("output", f"directory {output.parent} does not exist")
    if not os.access(output.parent, os.W_OK):
        raise InvalidArgument.single("output", f"directory {output.parent} is not writable")


def shard_of(customer_ids: Sequence[str], shard_count: int) -> NDArray[np.int64]:
    """The shard of each customer id: crc32 of its UTF-8 bytes mod shard_count (not Python's
    hash(), which changes from one process to the next)."""
    digests = np.fromiter(
        (zlib.crc32(customer_id.encode()) for customer_id in customer_ids),
        dtype=np.int64,
        count=len(customer_ids),
    )
    return digests % shard_count


def scoring_path(model: SubscriptionModel | None) -> str:
    """The scored_by value: the ScoringPath name as the metrics spell it."""
    path = offer_pb2.SCORING_PATH_HEURISTIC if model is None else offer_pb2.SCORING_PATH_LOCAL_MODEL
    return offer_pb2.ScoringPath.Name(path).removeprefix("SCORING_PATH_").lower()


def default_as_of(transactions: Transactions) -> int:
    """The day after the last purchase of the file."""
    return int(transactions.day.max(initial=0)) + 1


class _Scorer:
    """Per-run state shared by every chunk: item lookups, discounts, the model's codes."""

    def __init__(
        self,
        transactions: Transactions,
        as_of_epoch_day: int,
        max_offers: int,
        config: RecommendationConfig,
        min_purchases: int,
        model: SubscriptionModel | None,
    ) -> None:
        items = transactions.items
        self.as_of = as_of_epoch_day
        self.max_offers = max_offers
        self.config = config
        self.min_purchases = min_purchases
        self.model = model
        self.scored_by = scoring_path(model)
        self.catalog = training.Catalog(transactions)
        self.codes = self.catalog.codes(model.priors) if model else ()
        self.offered = np.fromiter(
            (
                offers.store_offers(item_id, category, config.excluded, config.never_subscribe)
                for item_id, category in zip(items.item_ids, items.categories, strict=True)
            ),
            dtype=np.bool_,
            count=len(items),
        )
        # Ties in score go to the smaller product id, as in scoring.rank.
        self.id_rank = np.empty(len(items), dtype=np.int64)
        self.id_rank[np.argsort(self.catalog.ids, kind="stable")] = np.arange(len(items))
        # A shopper's discount depends on how many offers it gets: 0 to max_offers.
        self.discounts = np.array(
            [config.discount_percent(count) for count in range(max_offers + 1)]
        )
        self.customer_ids = np.asarray(transactions.customer_ids, dtype=object)
        self.item_ids = np.asarray(items.item_ids, dtype=object)
        self.names = np.asarray(items.names, dtype=object)
        self.categories = np.asarray(items.categories, dtype=object)

    def judge(
        self, pairs: training.PairTable
    ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.int64]]:
        """Score, confidence and expected next purchase day of every pair; NaN confidence where
        the model was not asked because the pair could not be offered anyway."""
        table = pairs.table
        if self.model is None:
            return (
                offers.heuristic_score(table.confidence, table.recency_weight),
                table.confidence,
                table.next_purchase_epoch_day.astype(np.int64),
            )
        # Only pairs that could be offered at some confidence are worth the model's time.
        offerable = offers.eligible(
            table.meets_minimum_purchases, self.offered[pairs.item], np.inf, 0.0
        )
        rows = np.flatnonzero(offerable)
        matrix = feature_matrix(pairs.columns(self.catalog, self.codes), self.model.priors, rows)
        predicted = self.model.predict_matrix(matrix)
        score = np.full(table.confidence.size, np.nan)
        confidence = np.full(table.confidence.size, np.nan)
        next_day = np.zeros(table.confidence.size, dtype=np.int64)
        score[rows] = predicted.score
        confidence[rows] = predicted.confidence
        next_day[rows] = offers.expected_purchase_day(
            table.last_purchase_epoch_day[rows], predicted.interval_days
        )
        return score, confidence, next_day

    def chunk(self, transactions: Transactions) -> tuple[pa.RecordBatch, int]:
        """The offers of a chunk's shoppers, and how many shoppers had purchases."""
        pairs = training.pair_table(transactions, self.as_of, self.min_purchases, self.catalog)
        table = pairs.table
        score, confidence, next_day = self.judge(pairs)
        keep = offers.eligible(
            table.meets_minimum_purchases,
            self.offered[pairs.item],
            confidence,
            self.config.min_confidence,
        )
        rows = np.flatnonzero(keep)
        # Best first within each shopper: score descending, then product id.
        rows = rows[
            np.lexsort((self.id_rank[pairs.item[rows]], -score[rows], pairs.customer[rows]))
        ]
        customer = pairs.customer[rows]
        position = _positions(customer)
        top = position < self.max_offers
        rows, customer, position = rows[top], customer[top], position[top]
        first = _positions(customer) == 0
        shopper = np.cumsum(first) - 1
        discount = self.discounts[np.bincount(shopper)][shopper]
        terms = offers.terms(
            predicted_interval_days=table.median_interval_days[rows],
            quantity_per_day=table.quantity_per_day[rows],
            unit_price_usd=self.catalog.prices[pairs.item[rows]],
            mean_unit_price_usd=table.mean_unit_price_usd[rows],
            discount_percent=discount,
            next_purchase_epoch_day=next_day[rows],
            as_of_epoch_day=self.as_of,
            purchase_days=table.purchase_days[rows],
            grid=self.config.grid,
        )
        item = pairs.item[rows]
        reasons = [
            rhythm_text(*numbers)
            for numbers in zip(
                table.purchase_days[rows].tolist(),
                table.mean_interval_days[rows].tolist(),
                table.std_interval_days[rows].tolist(),
                table.days_since_last_purchase[rows].tolist(),
                strict=True,
            )
        ]
        columns = [
            pa.array(self.customer_ids[customer], pa.string()),
            pa.array(position + 1, pa.int32()),
            pa.array(self.item_ids[item], pa.string()),
            pa.array(self.names[item], pa.string()),
            pa.array(self.categories[item], pa.string()),
            pa.array(score[rows]),
            pa.array(confidence[rows]),
            pa.array(table.median_interval_days[rows]),
            pa.array(terms.delivery_interval_days, pa.int32()),
            pa.array(terms.interval_snap_error_days),
            pa.array(terms.quantity_per_delivery),
            pa.array(discount),
            pa.array(terms.savings.per_delivery),
            pa.array(terms.savings.monthly),
            pa.array(terms.savings.yearly),
            pa.array(terms.first_delivery_epoch_day.astype(np.int32), pa.date32()),
            pa.array(reasons, pa.string()),
            pa.array(terms.cold_start),
            pa.repeat(pa.scalar(self.scored_by), rows.size),
        ]
        batch = pa.RecordBatch.from_arrays(columns, schema=SCHEMA)
        return batch, table.customer_offsets.size - 1


def _positions(group: NDArray[np.integer]) -> NDArray[np.int64]:
    """Position of each element within its run of equal values (0 for the first)."""
    index = np.arange(group.size, dtype=np.int64)
    starts = np.ones(group.size, dtype=np.bool_)
    starts[1:] = group[1:] != group[:-1]
    return index - np.maximum.accumulate(np.where(starts, index, 0))


def _chunks(transactions: Transactions, chunk_events: int) -> Iterator[tuple[slice, int]]:
    """Row ranges of whole customers, about chunk_events events each (a customer with more is
    a chunk of its own), with the number of customers in each."""
    customer = transactions.customer
    starts = np.flatnonzero(np.diff(customer, prepend=-1))
    if not starts.size:
        return
    wanted = np.arange(0, customer.size, max(chunk_events, 1))
    cuts = np.unique(starts[np.minimum(np.searchsorted(starts, wanted), starts.size - 1)])
    bounds = np.append(cuts, customer.size).tolist()
    customers = np.diff(np.searchsorted(starts, bounds)).tolist()
    for start, stop, count in zip(bounds[:-1], bounds[1:], customers, strict=True):
        yield slice(start, stop), count


_forked: tuple[_Scorer, Transactions] | None = None
"""What forked workers score: set in the parent just before they are forked."""


def _one_thread() -> None:
    """Worker start-up: one OpenMP thread per process (see _scored)."""
    threadpool_limits(1)


def _score_forked(rows: slice) -> tuple[pa.RecordBatch, int]:
    assert _forked is not None, "set before the workers are forked"
    scorer, shard = _forked
    return scorer.chunk(shard.events(rows))


def _scored(
    scorer: _Scorer, shard: Transactions, chunks: Sequence[slice], workers: int
) -> Iterator[tuple[pa.RecordBatch, int]]:
    """Scorer.chunk of each chunk, in chunk order: here, or in forked worker processes that
    inherit the loaded data instead of receiving it.

    Every scoring process runs the model's trees on one OpenMP thread: parallelism comes from
    the workers. On a busy machine OpenMP threads spin waiting for each other: the model step of
    a Complete Journey run took 6.9 s on two threads and 1.3 s on one (2 cores, load average
    3.5)."""
    global _forked  # noqa: PLW0603 - the one way to hand forked workers large arrays for free
    if workers == 1 or len(chunks) < 2 or "fork" not in multiprocessing.get_all_start_methods():
        with threadpool_limits(1):
            for rows in chunks:
                yield scorer.chunk(shard.events(rows))
        return
    _forked = (scorer, shard)
    try:
        context = multiprocessing.get_context("fork")
        with context.Pool(min(workers, len(chunks)), initializer=_one_thread) as pool:
            yield from pool.imap(_score_forked, chunks)
    finally:
        _forked = None


def run(
    transactions: Transactions,
    output: Path,
    options: BatchOptions,
    config: RecommendationConfig,
    min_purchases: int,
    model: SubscriptionModel | None,
    progress: Callable[[int, int], object] = lambda done, total: None,
) -> BatchResult:
    """Score the options' shard and write its offers to `output` (Parquet, SCHEMA), atomically:
    a temporary file in the same directory, renamed over `output` once complete. `progress` is
    called with (shoppers done, shoppers in the shard) before the first chunk and after each."""
    started = time.perf_counter()
    as_of = (
        default_as_of(transactions) if options.as_of_epoch_day is None else options.as_of_epoch_day
    )
    scorer = _Scorer(
        transactions,
        as_of,
        options.max_offers or config.default_max_offers,
        config,
        min_purchases,
        model,
    )
    shard = transactions
    if options.shard_count > 1:
        mine = shard_of(transactions.customer_ids, options.shard_count) == options.shard_index
        shard = transactions.events(mine[transactions.customer])
    # A small input still gives each worker several chunks, so that none waits on the last.
    spread = -(-shard.event_count // (CHUNKS_PER_WORKER * options.workers))
    chunks = list(_chunks(shard, min(options.chunk_events, max(spread, 1))))
    total = sum(count for _, count in chunks)
    done = customers = offer_rows = with_offers = 0
    progress(done, total)
    partial = output.with_name(f".{output.name}.{os.getpid()}.partial")
    try:
        with pq.ParquetWriter(partial, SCHEMA) as writer:
            scored_chunks = _scored(scorer, shard, [rows for rows, _ in chunks], options.workers)
            for (batch, scored), (_, count) in zip(scored_chunks, chunks, strict=True):
                writer.write_batch(batch)
                customers += scored
                offer_rows += batch.num_rows
                with_offers += int(np.count_nonzero(batch.column("rank").to_numpy() == 1))
                done += count
                progress(done, total)
        partial.replace(output)
    except OSError as exc:
        raise FailedPrecondition(f"cannot write {output}: {exc.strerror or exc}") from None
    finally:
        partial.unlink(missing_ok=True)
    return BatchResult(
        customers=customers,
        offers=offer_rows,
        customers_with_offers=with_offers,
        as_of_epoch_day=as_of,
        scored_by=scorer.scored_by,
        seconds=time.perf_counter() - started,
    )
