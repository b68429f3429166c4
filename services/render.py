"""Terminal rendering of ProcessSeed events and offers with rich."""

from __future__ import annotations

from collections.abc import Sequence

from pantree.domain.v1 import analysis_pb2, history_pb2, offer_pb2
from pantree.orchestrator.v1 import orchestrator_service_pb2 as pb
from rich.console import Console
from rich.table import Table


def _date(value: object) -> str:
    return f"{value.year:04d}-{value.month:02d}-{value.day:02d}"  # type: ignore[attr-defined]


def month(console: Console, month_: history_pb2.SimulatedMonth) -> None:
    counts: dict[str, int] = {}
    for purchase in month_.purchases:
        counts[purchase.product_name] = counts.get(purchase.product_name, 0) + 1
    top = ", ".join(name for name, _ in sorted(counts.items(), key=lambda kv: -kv[1])[:3])
    console.print(
        f"[cyan]Month {month_.month_index}/{month_.month_count}[/cyan] "
        f"{_date(month_.start_date)} → {_date(month_.end_date)}: "
        f"{len(month_.purchases)} purchases, ${month_.total_spend_usd:,.2f}"
        + (f"  [dim]({top})[/dim]" if top else ""),
        highlight=False,
    )


def analysis(console: Console, analysis_: analysis_pb2.HistoryAnalysis) -> None:
    rhythmic = [item for item in analysis_.items if item.meets_minimum_purchases]
    console.print(
        f"[green]Analysis[/green]: {analysis_.event_count} purchases of "
        f"{len(analysis_.items)} products; {len(rhythmic)} bought on a rhythm "
        f"(≥ {analysis_.min_purchases} purchase days)",
        highlight=False,
    )


def offers(console: Console, offers_: Sequence[offer_pb2.Offer], scored_by: int) -> None:
    path = offer_pb2.ScoringPath.Name(scored_by).removeprefix("SCORING_PATH_").lower()  # type: ignore[arg-type]
    table = Table(title=f"Subscribe & Save offers (scored by {path})")
    for column in ("#", "Product", "Every", "Confidence", "Qty", "Saves / year", "Why"):
        table.add_column(column, overflow="fold")
    for offer in offers_:
        table.add_row(
            str(offer.rank),
            offer.product.name,
            f"{offer.delivery_interval_days} d",
            f"{offer.confidence:.0f}%",
            f"{offer.quantity_per_delivery:g}",
            f"${offer.yearly_savings_usd:,.2f}",
            offer.reason,
        )
    if offers_:
        console.print(table)
    else:
        console.print("[yellow]No product is bought regularly enough for an offer yet.[/yellow]")


def event(console: Console, event_: pb.ProcessSeedResponse) -> None:
    kind = event_.WhichOneof("event")
    if kind == "progress":
        console.print(f"[dim]… {event_.progress.message}[/dim]", highlight=False)
    elif kind == "resolution":
        for match in event_.resolution.matches:
            console.print(
                f"[dim]{match.name!r} → {match.product.name} "
                f"({match.product.category}, similarity {match.similarity:.2f})[/dim]",
                highlight=False,
            )
    elif kind == "month":
        month(console, event_.month)
    elif kind == "analysis":
        analysis(console, event_.analysis)
    elif kind == "recommendations":
        offers(console, event_.recommendations.offers, event_.recommendations.scored_by)
    elif kind == "summary":
        summary = event_.summary
        console.print(
            f"[bold]{summary.offer_count} offers[/bold] for {summary.customer_id}: "
            f"${summary.yearly_savings_usd:,.2f} saved per year on "
            f"${summary.total_spend_usd:,.2f} spent over {summary.month_count} months "
            f"({summary.elapsed_ms:.0f} ms)",
            highlight=False,
        )
