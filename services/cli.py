"""The `pantree` command: serve steps, run the demo, call the orchestrator."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import grpc
from google.protobuf import json_format
from pantree.domain.v1 import history_pb2, product_pb2
from pantree.orchestrator.v1 import orchestrator_service_pb2 as pb
from pantree.orchestrator.v1.orchestrator_service_pb2_grpc import OrchestratorServiceStub
from rich.console import Console

from pantree_common import config as config_loader
from pantree_common import logging as pantree_logging
from pantree_common.client import create_channel
from pantree_common.domain.catalog import catalog_file
from pantree_common.domain.dates import to_epoch_day
from pantree_common.errors import ConfigError, PantreeError, bad_request_violations
from services import doctor, render
from services.mesh import STEPS, MeshConfig, create_mesh_server, log_config, serve_mesh

DEFAULT_TARGET = "localhost:50051"
DEMO_ITEMS = "milk, eggs, whole wheat bread, bananas, coffee, greek yogurt, paper towels"


def _load_config(overrides: dict[str, str]) -> MeshConfig:
    env = config_loader.environment()
    env.update(overrides)
    return config_loader.load(MeshConfig, env)


def _serve(args: argparse.Namespace) -> int:
    """`pantree serve <step|all>`: outside asyncio, since several processes are forked first."""
    overrides: dict[str, str] = {}
    if args.port is not None:
        overrides["PORT"] = str(args.port)
    if args.host:
        overrides["PANTREE_HOST"] = args.host
    if args.processes is not None:
        overrides["PANTREE_PROCESSES"] = str(args.processes)
    config = _load_config(overrides)
    pantree_logging.configure(config.logging.level)
    log_config(config)
    return serve_mesh(STEPS if args.step == "all" else [args.step], config)


def serve_main(step: str) -> None:
    """Entry point of `python -m services.<step>`: serve one step from the environment."""
    main(["serve", step])


def _seed_request(args: argparse.Namespace) -> pb.ProcessSeedRequest:
    items = [name.strip() for name in args.items.split(",")]
    return pb.ProcessSeedRequest(
        customer_id=args.customer_id,
        archetype=args.archetype,
        seed_items=[product_pb2.SeedItem(name=name) for name in items],
        months=args.months,
        random_seed=args.seed,
        max_offers=args.max_offers,
    )


async def _stream(
    target: str, request: pb.ProcessSeedRequest, config: MeshConfig, timeout_s: float
) -> AsyncIterator[pb.ProcessSeedResponse]:
    async with create_channel(target, config.client, config.server.max_message_bytes) as channel:
        async for event in OrchestratorServiceStub(channel).ProcessSeed(request, timeout=timeout_s):
            yield event


def _fail(error: grpc.aio.AioRpcError, console: Console) -> int:
    console.print(f"[red]error: {error.code().name}: {error.details()}[/red]", highlight=False)
    for violation in bad_request_violations(error):
        console.print(f"  {violation.field}: {violation.description}", highlight=False)
    return 1


def _json_line(message: object) -> str:
    return json.dumps(json_format.MessageToDict(message))  # type: ignore[arg-type]


async def _process_seed(args: argparse.Namespace, config: MeshConfig) -> int:
    console = Console(stderr=args.json)
    try:
        async for event in _stream(args.target, _seed_request(args), config, args.timeout):
            if args.json:
                print(_json_line(event), flush=True)
            else:
                render.event(console, event)
    except grpc.aio.AioRpcError as exc:
        return _fail(exc, console)
    return 0


async def _demo(args: argparse.Namespace) -> int:
    overrides = {
        "PORT": "0",
        "PANTREE_HOST": "127.0.0.1",
        "PANTREE_SIMULATION_MONTH_DELAY_MS": str(args.delay_ms),
        "PANTREE_LOG_LEVEL": "WARNING",
        "PANTREE_METRICS_PORT": "0",
    }
    if args.data_dir:
        overrides["PANTREE_DATA_DIR"] = args.data_dir
    config = _load_config(overrides)
    pantree_logging.configure(config.logging.level, sys.stderr)
    server = create_mesh_server(STEPS, config)
    console = Console()
    await server.start()
    try:
        console.print(
            f"[bold]Pantree[/bold] mesh serving on {server.address} "
            f"(grpcurl -plaintext {server.address} list)"
        )
        args.target = server.address
        return await (_web_demo if args.web else _process_seed)(args, config)
    finally:
        await server.stop(grace=1.0)


async def _serve_gateway(args: argparse.Namespace) -> None:
    """Imported here so the mesh and the client commands never load the web framework."""
    from gateway import server as gateway  # noqa: PLC0415

    env = config_loader.environment()
    flags = {
        "PANTREE_GATEWAY_PORT": args.port,
        "PANTREE_GATEWAY_HOST": args.host,
        "ORCHESTRATOR_SERVICE_ADDR": args.orchestrator,
    }
    env.update({name: str(value) for name, value in flags.items() if value is not None})
    await gateway.serve(env)


async def _web_demo(args: argparse.Namespace, config: MeshConfig) -> int:
    """The terminal demo, then the web demo page served by a gateway until Ctrl-C."""
    from gateway import server as gateway  # noqa: PLC0415
    from gateway.config import GatewayConfig  # noqa: PLC0415

    env = config_loader.environment()
    env.update(
        {
            "PANTREE_GATEWAY_HOST": "127.0.0.1",
            "PANTREE_GATEWAY_PORT": str(args.web_port),
            "ORCHESTRATOR_SERVICE_ADDR": args.target,
        }
    )
    settings = config_loader.load(GatewayConfig, env)
    web = await gateway.start(
        gateway.create_server(settings, config.client, config.server.max_message_bytes)
    )
    code = await _process_seed(args, config)
    Console().print(f"[bold]Web demo[/bold]: {web.url} (Ctrl-C to stop)", highlight=False)
    await web.task
    return code


def _read_history(path: Path) -> history_pb2.PurchaseHistory:
    try:
        return json_format.Parse(path.read_text(encoding="utf-8"), history_pb2.PurchaseHistory())
    except (OSError, json_format.ParseError) as exc:
        raise SystemExit(f"cannot read a PurchaseHistory from {path}: {exc}") from None


async def _recommend(args: argparse.Namespace, config: MeshConfig) -> int:
    request = pb.RecommendRequest(
        history=_read_history(Path(args.history)),
        archetype=args.archetype,
        as_of_epoch_day=to_epoch_day(dt.date.fromisoformat(args.as_of)) if args.as_of else 0,
        max_offers=args.max_offers,
        include_analysis=args.analysis,
    )
    console = Console(stderr=args.json)
    async with create_channel(
        args.target, config.client, config.server.max_message_bytes
    ) as channel:
        try:
            response = await OrchestratorServiceStub(channel).Recommend(
                request, timeout=args.timeout
            )
        except grpc.aio.AioRpcError as exc:
            return _fail(exc, console)
    if args.json:
        print(_json_line(response))
    else:
        render.offers(console, response.offers, response.scored_by)
    return 0


async def _archetypes(args: argparse.Namespace, config: MeshConfig) -> int:
    console = Console()
    async with create_channel(
        args.target, config.client, config.server.max_message_bytes
    ) as channel:
        try:
            response = await OrchestratorServiceStub(channel).ListArchetypes(
                pb.ListArchetypesRequest(), timeout=args.timeout
            )
        except grpc.aio.AioRpcError as exc:
            return _fail(exc, console)
    for archetype in response.archetypes:
        console.print(f"[bold]{archetype.archetype_id}[/bold]: {archetype.description}")
    return 0


async def _doctor(args: argparse.Namespace) -> int:
    report = await doctor.run_checks(args.target)
    if args.json:
        print(report.to_json())
    else:
        doctor.render(Console(), report)
    return 0 if report.ok else 1


def _add_seed_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--archetype", default="busy_family", help="shopper archetype (see `pantree archetypes`)"
    )
    parser.add_argument("--items", default=DEMO_ITEMS, help="comma-separated seed items")
    parser.add_argument("--months", type=int, default=6, help="months to simulate (1-24)")
    parser.add_argument("--seed", type=int, default=7, help="random seed of the simulation")
    parser.add_argument("--customer-id", default="", help="shopper id (default: from the seed)")
    parser.add_argument("--max-offers", type=int, default=0, help="most offers (default 10)")
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object per stream event"
    )


def _client_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", default=DEFAULT_TARGET, help="orchestrator host:port")
    parser.add_argument("--timeout", type=float, default=30.0, help="deadline in seconds")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pantree", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve one step, or all of them on one port")
    serve.add_argument("step", choices=["all", *STEPS, "gateway"])
    serve.add_argument(
        "--port",
        type=int,
        help="port (default: $PORT or 50051; gateway: $PANTREE_GATEWAY_PORT or 8080)",
    )
    serve.add_argument(
        "--host",
        help="bind address (default: $PANTREE_HOST or [::]; gateway: $PANTREE_GATEWAY_HOST "
        "or 0.0.0.0)",
    )
    serve.add_argument(
        "--orchestrator", help="gateway only: orchestrator host:port ($ORCHESTRATOR_SERVICE_ADDR)"
    )
    serve.add_argument(
        "--processes",
        type=int,
        help="server processes sharing the port, e.g. one per core (default: $PANTREE_PROCESSES "
        "or 1)",
    )

    demo = commands.add_parser("demo", help="start the mesh in-process and stream a seed")
    _add_seed_arguments(demo)
    demo.add_argument(
        "--delay-ms",
        type=int,
        default=250,
        help="pause between simulated months, to watch the stream",
    )
    demo.add_argument("--data-dir", default="", help="data directory (default: $PANTREE_DATA_DIR)")
    demo.add_argument(
        "--web", action="store_true", help="also serve the web demo page until Ctrl-C"
    )
    demo.add_argument("--web-port", type=int, default=8080, help="port of the web demo page")
    demo.add_argument("--timeout", type=float, default=60.0, help="deadline in seconds")

    seed = commands.add_parser("process-seed", help="call ProcessSeed and show the stream")
    _add_seed_arguments(seed)
    _client_arguments(seed)

    recommend = commands.add_parser("recommend", help="call Recommend for a history file")
    recommend.add_argument(
        "--history", required=True, help="JSON file holding a pantree.domain.v1.PurchaseHistory"
    )
    recommend.add_argument("--archetype", default="", help="shopper archetype, if known")
    recommend.add_argument("--as-of", default="", help="analysis date YYYY-MM-DD (default today)")
    recommend.add_argument("--max-offers", type=int, default=0, help="most offers (default 10)")
    recommend.add_argument("--analysis", action="store_true", help="include the analysis")
    recommend.add_argument("--json", action="store_true", help="print the response as JSON")
    _client_arguments(recommend)

    archetypes = commands.add_parser("archetypes", help="list the shopper archetypes")
    _client_arguments(archetypes)

    settings = commands.add_parser("config", help="print every setting with its default")
    settings.add_argument(
        "--format",
        choices=["env", "markdown"],
        default="env",
        help="env: a .env.example file; markdown: the README table",
    )

    check = commands.add_parser(
        "doctor", help="check every configured dependency; exit 1 when one needed fails"
    )
    check.add_argument(
        "--target", default=None, help="also check the server at host:port (health, version)"
    )
    check.add_argument("--json", action="store_true", help="print the report as one JSON object")

    datasets = "completejourney, tafeng, or a CSV/Parquet file path"
    evaluate = commands.add_parser(
        "evaluate", help="evaluate every method on real data with the time-split protocol"
    )
    evaluate.add_argument("--dataset", required=True, help=datasets)
    evaluate.add_argument(
        "--cutoffs", default="rolling", help="'rolling' (every 4 weeks) or a day number (336)"
    )
    evaluate.add_argument("--output", type=Path, required=True, help="JSON file to write")
    evaluate.add_argument(
        "--last-basket", action="store_true", help="also score each customer's last basket"
    )

    ceiling = commands.add_parser(
        "evaluation-ceiling",
        help="the Task-B AUC a model of these features reaches when fitted on the test window "
        "itself (a diagnostic upper bound, not a result)",
    )
    ceiling.add_argument("--dataset", required=True, help=datasets)
    ceiling.add_argument(
        "--cutoffs", default="rolling", help="'rolling' (every 4 weeks) or a day number (336)"
    )
    ceiling.add_argument("--output", type=Path, required=True, help="JSON file to write")
    ceiling.add_argument(
        "--context",
        action="store_true",
        help="also with Complete Journey demographics, discount shares and promotions",
    )

    report = commands.add_parser("evaluation-report", help="write docs/EVALUATION.md")
    report.add_argument("results", type=Path, nargs="+", help="JSON files from `evaluate`")
    report.add_argument("--output", type=Path, default=Path("docs/EVALUATION.md"))
    report.add_argument("--notes", type=Path, help="Markdown file appended as the Notes section")

    catalog = commands.add_parser("catalog", help="build the Complete Journey product catalog")
    catalog.add_argument("action", choices=["build"])
    catalog.add_argument(
        "--output", type=Path, help="catalog file (default: the one PANTREE_DATA_DIR serves)"
    )

    simulate_check = commands.add_parser(
        "simulate-check", help="compare simulated and real rebuy intervals (KS per category)"
    )
    simulate_check.add_argument("--write", type=Path, help="also write the Markdown report here")

    train = commands.add_parser("train", help="train the subscription model and save it")
    train.add_argument("--dataset", required=True, help=datasets)
    train.add_argument("--output", type=Path, required=True, help="directory for the artifact")
    train.add_argument(
        "--cutoff", default="end", help="train on days before this day number ('end': all)"
    )

    batch = commands.add_parser(
        "batch", help="score every shopper of a purchase file in-process into a Parquet file"
    )
    batch.add_argument("--input", required=True, help=datasets)
    batch.add_argument("--output", type=Path, required=True, help="Parquet file to write")
    batch.add_argument(
        "--shard-index", type=int, help="shard to score (default: $JOB_COMPLETION_INDEX or 0)"
    )
    batch.add_argument("--shard-count", type=int, default=1, help="shards in all (default 1)")
    batch.add_argument(
        "--model", help="model directory (default: $PANTREE_MODEL_PATH; '': the heuristic)"
    )
    batch.add_argument(
        "--as-of", default="", help="analysis date YYYY-MM-DD (default: after the last purchase)"
    )
    batch.add_argument("--max-offers", type=int, default=0, help="most offers per shopper")
    batch.add_argument("--workers", type=int, default=1, help="scoring processes (default 1)")
    batch.add_argument("--quiet", action="store_true", help="no progress bar")

    model_server = commands.add_parser(
        "model-server",
        help="serve the model as a SageMaker container: GET /ping, POST /invocations",
    )
    model_server.add_argument(
        "--port", type=int, help="port (default: $SAGEMAKER_BIND_TO_PORT or 8080)"
    )
    model_server.add_argument(
        "--host", help="bind address (default: $PANTREE_MODEL_SERVER_HOST or 0.0.0.0)"
    )
    return parser


def _model_server(args: argparse.Namespace) -> int:
    """Imported here so the other commands never load the model server."""
    from services.recommendation import model_server  # noqa: PLC0415

    overrides = {"SAGEMAKER_BIND_TO_PORT": str(args.port)} if args.port is not None else {}
    if args.host:
        overrides["PANTREE_MODEL_SERVER_HOST"] = args.host
    return model_server.main(overrides)


def _batch(args: argparse.Namespace) -> int:
    """`pantree batch` (services.recommendation.batch): bad input is one line on stderr and exit
    code 2, never a traceback."""
    from tqdm import tqdm  # noqa: PLC0415

    from pantree_common.datasets.registry import load_dataset  # noqa: PLC0415
    from pantree_common.domain.catalog import open_catalog, use_catalog  # noqa: PLC0415
    from pantree_common.domain.dates import from_epoch_day  # noqa: PLC0415
    from services.recommendation import batch  # noqa: PLC0415
    from services.recommendation.model import load as load_model  # noqa: PLC0415

    pantree_logging.configure("WARNING", sys.stderr)
    try:
        options = batch.BatchOptions.parse(
            as_of=args.as_of,
            max_offers=args.max_offers,
            shard_index=args.shard_index,
            shard_count=args.shard_count,
            workers=args.workers,
            environ=os.environ,
        )
        batch.check_output(args.output)
        config = _load_config({})
        use_catalog(open_catalog(config.catalog.catalog, config.vectors.data_dir))
        model_path = config.recommendation.model_path if args.model is None else args.model
        model = load_model(model_path) if model_path else None
        transactions = load_dataset(args.input)
        hidden = args.quiet or not sys.stderr.isatty()
        with tqdm(unit=" shoppers", disable=hidden, file=sys.stderr) as bar:

            def show(done: int, total: int) -> None:
                bar.total = total
                bar.update(done - bar.n)

            result = batch.run(
                transactions,
                args.output,
                options,
                config.recommendation,
                config.frequency.min_purchases,
                model,
                show,
            )
    except PantreeError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    shard = f"shard {options.shard_index} of {options.shard_count}"
    print(
        f"wrote {args.output}: {result.offers:,} offers for {result.customers_with_offers:,} "
        f"of {result.customers:,} shoppers ({shard}), scored by {result.scored_by}, as of "
        f"{from_epoch_day(result.as_of_epoch_day)}, "
        f"in {result.seconds:.1f} s"
    )
    return 0


def _offline(args: argparse.Namespace) -> int:
    """The jobs over data sets; imported here so serving never loads pandas and the models."""
    from services.evaluation import job  # noqa: PLC0415

    if args.command == "catalog":
        return _build_catalog(args.output)
    if args.command == "simulate-check":
        return _simulate_check(args.write)
    if args.command == "evaluate":
        job.evaluate(args.dataset, args.cutoffs, args.output, args.last_basket)
        print(f"wrote {args.output}")
    elif args.command == "evaluation-ceiling":
        job.ceiling(args.dataset, args.cutoffs, args.output, args.context)
        print(f"wrote {args.output}")
    elif args.command == "evaluation-report":
        notes = args.notes.read_text(encoding="utf-8") if args.notes else ""
        print(f"wrote {job.report(args.results, args.output, notes)}")
    else:
        print(f"wrote {job.train(args.dataset, args.output, args.cutoff)}")
    return 0


def _build_catalog(output: Path | None) -> int:
    from pantree_common.datasets.catalog_build import build_catalog  # noqa: PLC0415

    path = output or catalog_file(_load_config({}).vectors.data_dir)
    built = build_catalog()
    built.save(path)
    print(
        f"wrote {path}: {len(built.products)} products, {len(built.categories)} categories, "
        f"{len(built.calibration.rhythms)} fitted rhythms"
    )
    return 0


def _simulate_check(write: Path | None) -> int:
    """Print the KS table; exit 1 when the median misses the target."""
    from services.simulation import check  # noqa: PLC0415

    report = check.run_check()
    command = "pantree simulate-check" + (f" --write {write}" if write else "")
    text = check.markdown(report, command)
    if write:
        write.write_text(text, encoding="utf-8")
        print(f"wrote {write}")
    print(text)
    return 0 if report.median_ks <= check.TARGET_MEDIAN_KS else 1


async def _run(args: argparse.Namespace) -> int:
    if args.command == "demo":
        return await _demo(args)
    if args.command == "doctor":
        return await _doctor(args)
    overrides: dict[str, str] = {}
    if args.command == "serve" and args.step == "gateway":
        await _serve_gateway(args)
        return 0
    client = {"process-seed": _process_seed, "recommend": _recommend, "archetypes": _archetypes}
    return await client[args.command](args, _load_config(overrides))


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.command == "config":
        render = {"env": config_loader.env_example, "markdown": config_loader.markdown_table}
        print(render[args.format](MeshConfig()), end="")
        sys.exit(0)
    try:
        if args.command in {
            "evaluate",
            "evaluation-ceiling",
            "evaluation-report",
            "train",
            "catalog",
            "simulate-check",
        }:
            pantree_logging.configure("INFO", sys.stderr)
            code = _offline(args)
        elif args.command == "model-server":
            code = _model_server(args)
        elif args.command == "batch":
            code = _batch(args)
        elif args.command == "serve" and args.step != "gateway":
            code = _serve(args)
        else:
            code = asyncio.run(_run(args))
    except ConfigError as exc:
        sys.exit(f"configuration error: {exc.message}")
    except PantreeError as exc:
        starting = args.command in {"serve", "demo"}
        sys.exit(f"{'cannot start' if starting else 'error'}: {exc.message}")
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    main()
