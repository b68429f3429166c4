"""A TCP proxy that delays what a server sends back, to make a real dependency (a Milvus
server) slow on demand: every byte from the server reaches the client `delay_s` later (the
value when the byte arrived), in order; what the client sends passes at once."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator


class DelayProxy:
    """Listens on 127.0.0.1 (a free port) in a thread of its own and forwards to `target`."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.delay_s = 0.0
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(self._connection, "127.0.0.1", 0)
        )
        self.port = server.sockets[0].getsockname()[1]
        self._started.set()
        self._loop.run_forever()
        server.close()
        for task in asyncio.all_tasks(self._loop):
            task.cancel()
        self._loop.run_until_complete(
            asyncio.gather(*asyncio.all_tasks(self._loop), return_exceptions=True)
        )
        self._loop.close()

    async def _connection(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(
            self._pump(client_reader, upstream_writer, delayed=False),
            self._pump(upstream_reader, client_writer, delayed=True),
            return_exceptions=True,
        )

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delayed: bool
    ) -> None:
        """Copy until EOF; with `delayed`, each chunk is written delay_s after it was read."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, chunk = await queue.get()
                await asyncio.sleep(max(0.0, due - loop.time()))
                if not chunk:
                    return
                writer.write(chunk)
                await writer.drain()

        delivering = asyncio.create_task(deliver())
        try:
            while chunk := await reader.read(65536):
                queue.put_nowait((loop.time() + (self.delay_s if delayed else 0.0), chunk))
        finally:
            queue.put_nowait((loop.time() + (self.delay_s if delayed else 0.0), b""))
            with contextlib.suppress(Exception):
                await delivering
            writer.close()

    def start(self) -> None:
        self._thread.start()
        self._started.wait(10)

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@contextlib.contextmanager
def delay_proxy(target_host: str, target_port: int) -> Iterator[DelayProxy]:
    proxy = DelayProxy(target_host, target_port)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()
