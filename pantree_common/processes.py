"""One gRPC port served by several processes (SO_REUSEPORT), as in gRPC's multiprocessing example.

A Python process runs Python on one core at a time, and the handlers of Pantree's steps are
Python: on a machine with N cores, N server processes each take their share. The kernel spreads
new *connections* over the processes listening on the port (not calls: one client connection
stays with one process), so the gain shows with several clients or connections, as behind a load
balancer. Processes are forked before any gRPC object exists (gRPC is not fork-safe); each one
then builds its own server, channels, model and store clients.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import signal
import socket
from collections.abc import Callable, Iterator
from multiprocessing.connection import wait
from types import FrameType

log = logging.getLogger("pantree.processes")

Worker = Callable[[int, int, Callable[[], None]], None]
"""worker(index, port, ready): serve on `port` until signalled, calling ready() once serving."""


@contextlib.contextmanager
def reserved_port(host: str, port: int) -> Iterator[int]:
    """Hold host:port (a free one for port 0) with a SO_REUSEPORT socket that never listens, so
    the workers can all bind it and nothing else takes it meanwhile."""
    address = host.strip("[]")
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((address, port))
        yield sock.getsockname()[1]


def serve_processes(count: int, host: str, port: int, worker: Worker) -> int:
    """Run `worker` in `count` forked processes sharing host:port until SIGTERM or SIGINT, which
    is passed on to every worker. Worker 0 starts alone until it is serving, so work done once
    per data directory (building the catalog, indexing it in the vector store) is not raced by
    the others. Returns 0 once every worker has stopped, or the exit code of the first one that
    stopped unasked (the others are then stopped too)."""
    fork = multiprocessing.get_context("fork")
    with reserved_port(host, port) as bound:
        workers: list[multiprocessing.process.BaseProcess] = []
        stopping = False

        def stop(signum: int = signal.SIGTERM, frame: FrameType | None = None) -> None:
            nonlocal stopping
            stopping = True
            for process in workers:
                if process.is_alive():
                    process.terminate()  # SIGTERM: the worker drains, then stops

        previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            for index in range(count):
                if stopping:
                    break
                ready = fork.Event()
                process = fork.Process(
                    target=_run, args=(worker, index, bound, ready.set), name=f"pantree-{index}"
                )
                process.start()
                workers.append(process)
                while index == 0 and not ready.wait(0.2) and not stopping:
                    if not process.is_alive():
                        return process.exitcode or 1
            log.info("serving", extra={"port": bound, "processes": count})
            code = 0
            running = list(workers)
            while running:
                wait([p.sentinel for p in running])
                for ended in [p for p in running if not p.is_alive()]:
                    running.remove(ended)
                    if not stopping:
                        code = ended.exitcode or 1
                        log.error(
                            "a server process stopped unasked; stopping the others",
                            extra={"process": ended.name, "exit_code": ended.exitcode},
                        )
                        stop()
            return code
        finally:
            stop()
            for started in workers:
                started.join()
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _run(worker: Worker, index: int, port: int, ready: Callable[[], None]) -> None:
    """A worker process: default signal handling (the worker installs its own), then serve."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)
    worker(index, port, ready)
