"""Serving the gateway with uvicorn: as its own process, or beside an in-process mesh."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import uvicorn

from gateway.app import create_app
from gateway.config import GatewayConfig
from pantree_common import config as config_loader
from pantree_common import logging as pantree_logging
from pantree_common.client import ClientConfig
from pantree_common.logging import LoggingConfig
from pantree_common.server import ServerConfig

log = logging.getLogger("pantree.gateway")


class GatewayServer(uvicorn.Server):
    """uvicorn, stopping on SIGTERM or SIGINT as the gRPC servers do: finish the open requests,
    then return (plain uvicorn re-raises the signal, ending the process with -15 instead of 0)."""

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.handle_exit, sig, None)
        try:
            yield
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)


def create_server(
    config: GatewayConfig, client: ClientConfig, max_message_bytes: int
) -> GatewayServer:
    """A gateway server for `config`; request logs come from the gateway itself (JSON lines)."""
    app = create_app(config, client, max_message_bytes)
    return GatewayServer(
        uvicorn.Config(
            app,
            host=config.host,
            port=config.port,
            log_config=None,
            access_log=False,
            ws_max_size=config.max_body_bytes,
            server_header=False,
        )
    )


@dataclass
class RunningGateway:
    """A gateway started in the current event loop (`pantree demo --web`, tests)."""

    server: GatewayServer
    task: asyncio.Task[None]

    @property
    def port(self) -> int:
        return int(self.server.servers[0].sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    async def stop(self) -> None:
        self.server.should_exit = True
        await self.task


async def start(server: GatewayServer) -> RunningGateway:
    """Start `server` and return once it accepts connections (its port is known then)."""
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("the gateway stopped while starting")
        await asyncio.sleep(0.01)
    return RunningGateway(server, task)


async def serve(environ: Mapping[str, str]) -> None:
    """`pantree serve gateway`: read the settings once, log them once, serve until SIGTERM.

    Besides its own settings the gateway reads those every Pantree process shares: the client's
    deadline and retries, the log level, and the servers' gRPC message limit.
    """
    config = config_loader.load(GatewayConfig, environ)
    client = config_loader.load(ClientConfig, environ)
    max_message_bytes = config_loader.load(ServerConfig, environ).max_message_bytes
    pantree_logging.configure(config_loader.load(LoggingConfig, environ).level)
    shown = [*config_loader.settings(config), *config_loader.settings(client)]
    log.info("configuration", extra={"settings": {s.env_var: s.value for s in shown}})
    await create_server(config, client, max_message_bytes).serve()
