"""A real Milvus server for tests and benchmarks: PyPI `milvus` (2.3.x, `milvus-server`).

`start_milvus_server(data_dir)` runs the venv's `milvus-server --data DIR` in its own process
group with a free port for every port it opens, waits until a MilvusClient call succeeds, and
returns a handle whose `stop()` ends the whole group (SIGTERM, then SIGKILL) and checks that no
process of it survives. `restart()` starts it again on the same ports and data directory.

What `milvus-server` is: a Python wrapper that writes DIR/configs/milvus.yaml, unpacks the Go
binary into DIR/bin and runs `DIR/bin/milvus run standalone` as its child. Its quirks, handled
here:

- The wrapper ignores SIGTERM's effect on its child (it stops the child only on SIGINT) and
  never notices the child dying, so it can outlive a crashed server and a killed wrapper leaves
  the server running: the group is signalled as a whole, and readiness checks the child.
- Each `--*-port` flag is where a search for a free port *starts*; the wrapper takes the first
  one it can bind on 127.0.0.1. The port actually used is read back from the generated config.
- The embedded etcd ignores `--etcd-port` for listening (it always took 2379/2380, so two
  servers collided): the server is given an etcd config file (env ETCD_CONFIG_PATH, which
  Milvus maps to `etcd.config.path`) that puts both etcd ports on 127.0.0.1 free ports.

Addresses: etcd listens on 127.0.0.1 only. Every node's advertised address (`<role>.ip`) is set
to 127.0.0.1, so internal calls stay on loopback. What cannot be changed: Milvus 2.3 binds its
gRPC ports (proxy, internal proxy, coordinators, nodes) on all interfaces, and the wrapper picks
the metrics/health HTTP port itself (first free one from 9091 up, all interfaces, passed to the
child as METRICS_PORT, which overrides the environment). Use it on machines whose other
interfaces are not exposed, as in CI.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from pymilvus import MilvusClient

# Port flags of `milvus-server`, in the order they get ports.
PORT_FLAGS = (
    "etcd-port",
    "root-coord-port",
    "proxy-port",
    "proxy-internal-port",
    "query-coord-port",
    "query-node-port",
    "index-coord-port",
    "index-node-port",
    "data-coord-port",
    "data-node-port",
)
ETCD_PEER = "etcd-peer-port"  # not a flag: goes into the etcd config file
METRICS = "metrics-port"  # not a flag: the wrapper picks it (patched below)
ALL_PORTS = (*PORT_FLAGS, ETCD_PEER, METRICS)
# Config sections whose `ip` (the address a node registers for others to dial) is pinned.
ROLES_WITH_IP = (
    "rootCoord",
    "proxy",
    "queryCoord",
    "queryNode",
    "indexNode",
    "dataCoord",
    "dataNode",
)
# Settings given with --extra-config (keys of the generated milvus.yaml).
EXTRA_CONFIG = {
    # A crashed server leaves its nodes' sessions in etcd until they expire; a restarted one
    # waits for that before it loads collections again (30 s by default).
    "common.session.ttl": "10",
    # A graceful stop otherwise waits up to 30 minutes for a standalone query node to hand its
    # segments to another node, which never comes.
    "common.gracefulStopTimeout": "5",
    # Loading a collection takes several rounds of these checks (1 s and 0.5 s by default).
    "queryCoord.checkInterval": "200",
    "queryCoord.distPullInterval": "100",
}
# Settings that the generated milvus.yaml does not list, so --extra-config cannot set them:
# Milvus also reads every setting from the environment variable spelled like its key without
# dots (case and underscores ignored).
MILVUS_ENV = {
    "QUERYCOORD_CHECKCHANNELINTERVAL": "100",  # ms; a load waits for one round (1 s default)
}
START_TIMEOUT_S = 90.0  # under pytest-timeout's 120 s per test, which counts fixture set-up
# Milvus 2.3 standalone's graceful stop, with collections loaded, spends ~10 s retrying calls to
# the coordinators it has already stopped; it is cut short by SIGKILL. Nothing acknowledged is
# lost that way: writes are in the write-ahead log (rocksmq under DIR/data) before they are
# acknowledged, and the tests restart a killed server and find its data.
STOP_GRACE_S = 3.0
LOG_TAIL_CHARS = 4_000


# `milvus-server` is `from milvus import main; main()`: this runs the same entry point with two
# changes to the wrapper's port handling (see the module docstring).
_LAUNCHER = """
import os, socket, sys
import milvus

def try_bind_port(self, port):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
        sock.listen()
        return sock
    except OSError as error:
        sock.close()
        raise SystemExit(f"milvus-server launcher: port {port} is taken: {error}")

def resolve_port(self, port_start):
    return port_start, self.try_bind_port(port_start)

milvus.MilvusServerConfig.try_bind_port = try_bind_port
milvus.MilvusServerConfig.resolve_port = resolve_port
milvus.default_server.webservice_port = int(os.environ["PANTREE_MILVUS_METRICS_PORT"])
sys.argv[0] = "milvus-server"
milvus.main()
"""


class MilvusServerError(RuntimeError):
    """The server did not start (the message carries why and its log tail) or did not stop."""


def free_ports(count: int) -> list[int]:
    """`count` distinct TCP ports free on 127.0.0.1 right now (held together while chosen)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def milvus_server_command() -> Path:
    """The `milvus-server` script installed next to this interpreter (the venv's bin dir)."""
    return Path(sys.executable).parent / "milvus-server"


def group_members(pgid: int) -> dict[int, tuple[str, str]]:
    """Processes in process group `pgid`: pid -> (state letter, command name), from /proc."""
    members: dict[int, tuple[str, str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        # pid (comm) state ppid pgrp ...; comm may hold spaces and parentheses.
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        state, _ppid, pgrp = stat[stat.rindex(")") + 2 :].split()[:3]
        if int(pgrp) == pgid:
            members[int(entry.name)] = (state, comm)
    return members


def _rss_bytes(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    found = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    return int(found.group(1)) * 1024 if found else 0


def _tail(path: Path, chars: int = LOG_TAIL_CHARS) -> str:
    try:
        with path.open("rb") as log:
            log.seek(0, os.SEEK_END)
            log.seek(max(0, log.tell() - chars))
            return log.read().decode("utf-8", "replace")
    except OSError as error:
        return f"<{path} unreadable: {error}>"


@dataclass(eq=False)
class MilvusServer:
    """A running (or stopped) `milvus-server` on fixed ports and a fixed data directory."""

    data_dir: Path
    ports: dict[str, int]
    start_timeout_s: float = START_TIMEOUT_S
    extra_config: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    startup_s: float = 0.0
    _wrapper_log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._wrapper_log = self.data_dir / "milvus-server-wrapper.log"

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.ports['proxy-port']}"

    @property
    def running(self) -> bool:
        return self.process is not None

    def _etcd_config(self) -> Path:
        client = f"http://127.0.0.1:{self.ports['etcd-port']}"
        peer = f"http://127.0.0.1:{self.ports[ETCD_PEER]}"
        path = self.data_dir / "etcd-embed.yaml"
        path.write_text(
            "name: default\n"
            f"listen-client-urls: {client}\nadvertise-client-urls: {client}\n"
            f"listen-peer-urls: {peer}\ninitial-advertise-peer-urls: {peer}\n"
            f"initial-cluster: default={peer}\n"
        )
        return path

    def start(self) -> None:
        """Start the server and wait until it answers; MilvusServerError with its logs if not."""
        if self.process is not None:
            raise MilvusServerError("already running")
        if not milvus_server_command().exists():
            raise MilvusServerError(
                f"{milvus_server_command()} is missing: install the PyPI `milvus` package "
                "(it is in the dev extra: `make setup`)"
            )
        command = [sys.executable, "-c", _LAUNCHER, "--data", str(self.data_dir)]
        for flag in PORT_FLAGS:
            command += [f"--{flag}", str(self.ports[flag])]
        for role in ROLES_WITH_IP:
            command += ["--extra-config", f"{role}.ip=127.0.0.1"]
        for key, value in {**EXTRA_CONFIG, **self.extra_config}.items():
            command += ["--extra-config", f"{key}={value}"]
        env = {
            **os.environ,
            **MILVUS_ENV,
            "ETCD_CONFIG_PATH": str(self._etcd_config()),
            "PANTREE_MILVUS_METRICS_PORT": str(self.ports[METRICS]),
        }
        began = time.monotonic()
        with self._wrapper_log.open("ab") as log:
            try:
                self.process = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=self.data_dir,
                    start_new_session=True,  # its own process group: stop() signals all of it
                )
            except OSError as error:
                raise MilvusServerError(f"cannot run {command[0]}: {error}") from error
        _RUNNING.add(self)
        try:
            self._wait_ready(began)
        except BaseException:
            self.stop(grace_s=0)
            raise
        self.startup_s = time.monotonic() - began

    def _wait_ready(self, began: float) -> None:
        deadline = began + self.start_timeout_s
        last_error = "no attempt yet"
        child_seen = False
        while time.monotonic() < deadline:
            process = self.process
            assert process is not None
            if process.poll() is not None:
                self._fail(f"milvus-server exited with status {process.returncode}")
            members = group_members(process.pid)
            live_child = any(
                comm == "milvus" and state not in "ZX" for state, comm in members.values()
            )
            if live_child:
                child_seen = True
            elif child_seen or any(comm == "milvus" for _, comm in members.values()):
                self._fail("the milvus process died")
            if live_child:
                client = None
                try:
                    client = MilvusClient(uri=self.uri, timeout=2)
                    client.list_collections(timeout=2)
                    return
                except Exception as error:  # not ready yet: any pymilvus or gRPC failure
                    last_error = f"{type(error).__name__}: {error}"
                finally:
                    if client is not None:
                        with contextlib.suppress(Exception):
                            client.close()
            time.sleep(0.5)
        self._fail(f"not ready after {self.start_timeout_s:.0f} s (last error: {last_error})")

    def logs(self) -> str:
        """The tails of the wrapper's output and of the server's own logs."""
        parts = [f"--- {self._wrapper_log.name}\n{_tail(self._wrapper_log)}"]
        logs = self.data_dir / "logs"
        for name in ("milvus-stderr.log", "milvus-stdout.log", "etcd.log"):
            if (logs / name).exists():
                parts.append(f"--- logs/{name}\n{_tail(logs / name)}")
        return "\n".join(parts)

    def _fail(self, why: str) -> None:
        raise MilvusServerError(
            f"Milvus server in {self.data_dir} did not start: {why}\n{self.logs()}"
        )

    def rss_bytes(self) -> int:
        """Resident memory of every process of the server."""
        if self.process is None:
            return 0
        return sum(_rss_bytes(pid) for pid in group_members(self.process.pid))

    def kill(self) -> None:
        """Crash it: SIGKILL the whole group at once (no graceful shutdown)."""
        self.stop(grace_s=0)

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """Stop the server gracefully if it can, by force if not, and check that no process of
        its group survives.

        SIGTERM goes to the milvus process first (a graceful shutdown, usually well under a
        second); then SIGINT to the wrapper, which reaps it and exits (a SIGTERM would kill the
        wrapper alone and leave the server orphaned); after grace_s, SIGKILL to the whole group.
        """
        process, self.process = self.process, None
        _RUNNING.discard(self)
        if process is None:
            return
        pgid = process.pid
        deadline = time.monotonic() + grace_s
        if grace_s > 0:
            for pid, (_, comm) in group_members(pgid).items():
                if comm == "milvus":
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGTERM)
            while time.monotonic() < deadline and _live(group_members(pgid), "milvus"):
                time.sleep(0.1)
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
        if group_members(pgid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
        process.wait(timeout=10)
        deadline = time.monotonic() + 10
        while _live(group_members(pgid)):
            if time.monotonic() > deadline:
                raise MilvusServerError(f"Milvus processes survived SIGKILL: {group_members(pgid)}")
            time.sleep(0.1)

    def remove_binaries(self) -> None:
        """Delete the ~250 MB the wrapper unpacked into DIR/bin (a later start unpacks again)."""
        if self.process is not None:
            raise MilvusServerError("still running")
        shutil.rmtree(self.data_dir / "bin", ignore_errors=True)

    def restart(self, grace_s: float = STOP_GRACE_S) -> None:
        """Stop, then start again on the same ports and data directory."""
        self.stop(grace_s)
        self.start()


def _live(members: dict[int, tuple[str, str]], comm: str | None = None) -> bool:
    """Whether a process (named `comm`, if given) of `members` still runs (not a zombie)."""
    return any(state not in "ZX" and comm in (None, c) for state, c in members.values())


_RUNNING: set[MilvusServer] = set()


@atexit.register
def _stop_leftovers() -> None:
    """Whatever a crashed test run left running is stopped when the interpreter exits."""
    for server in list(_RUNNING):
        with contextlib.suppress(Exception):
            server.stop(grace_s=2)


def drop_collections(uri: str, prefix: str) -> None:
    """Drop the server's collections whose names start with `prefix` (test clean-up: a server
    restarted later reloads every collection still loaded)."""
    client = MilvusClient(uri=uri, dedicated=True, timeout=10)
    try:
        for name in client.list_collections():
            if name.startswith(prefix):
                client.drop_collection(name)
    finally:
        client.close()


def start_milvus_server(data_dir: Path, start_timeout_s: float = START_TIMEOUT_S) -> MilvusServer:
    """A started server on fresh free ports in data_dir; MilvusServerError (with logs) if not."""
    ports = dict(zip(ALL_PORTS, free_ports(len(ALL_PORTS)), strict=True))
    server = MilvusServer(data_dir, ports, start_timeout_s)
    server.start()
    return server
