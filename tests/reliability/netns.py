"""Hosts on a private network made of Linux network namespaces, for tests that need a real
network hop and a link that can be cut.

Each host is a namespace with one veth pair: one end in the host (its own address on
10.77.<n>.0/24), the other plugged into a bridge that lives in a namespace of its own (the
switch), so the machine's firewall never sees the traffic. The test process reaches every host
through one more pair from the root namespace. `cut(host)` takes the host's switch port down:
its packets vanish without a reset, as when a cable or a node's network dies.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field


def _ip(*args: str, namespace: str | None = None) -> None:
    prefix = ["ip", "netns", "exec", namespace] if namespace else []
    subprocess.run([*prefix, "ip", *args], check=True, capture_output=True, text=True, timeout=10)


def refusal() -> str | None:
    """Why this machine cannot create network namespaces, or None when it can."""
    probe = f"ptprobe{os.getpid()}"
    try:
        _ip("netns", "add", probe)
    except (OSError, subprocess.SubprocessError) as error:
        detail = getattr(error, "stderr", "") or str(error)
        return f"`ip netns add` refused here ({detail.strip()}): needs root and CAP_SYS_ADMIN"
    _ip("netns", "del", probe)
    return None


@dataclass
class Network:
    """A switch namespace with a bridge; `add_host` plugs namespaces into it."""

    tag: str = field(default_factory=lambda: f"pt{os.getpid() % 100_000}")
    subnet: str = field(default_factory=lambda: f"10.77.{os.getpid() % 250 + 1}")
    hosts: dict[str, str] = field(default_factory=dict)
    """Host name -> its address."""
    _namespaces: list[str] = field(default_factory=list)

    @property
    def switch(self) -> str:
        return f"{self.tag}-sw"

    def namespace(self, host: str) -> str:
        return f"{self.tag}-{host}"

    def launcher(self, host: str) -> Sequence[str]:
        """The command prefix that runs a program inside `host`."""
        return ("ip", "netns", "exec", self.namespace(host))

    def _port(self, index: int) -> str:
        return f"{self.tag}p{index}"  # the switch's end of host `index`, at most 15 characters

    def start(self) -> None:
        _ip("netns", "add", self.switch)
        self._namespaces.append(self.switch)
        _ip("link", "add", "br0", "type", "bridge", namespace=self.switch)
        _ip("link", "set", "br0", "up", namespace=self.switch)
        # The test process's own way in: a pair from the root namespace (address .1).
        _ip("link", "add", f"{self.tag}h", "type", "veth", "peer", "name", self._port(0))
        _ip("link", "set", self._port(0), "netns", self.switch)
        _ip("link", "set", self._port(0), "master", "br0", "up", namespace=self.switch)
        _ip("addr", "add", f"{self.subnet}.1/24", "dev", f"{self.tag}h")
        _ip("link", "set", f"{self.tag}h", "up")

    def add_host(self, name: str) -> str:
        """A new namespace on the switch; returns its address."""
        index = len(self.hosts) + 1
        namespace, address = self.namespace(name), f"{self.subnet}.{index + 1}"
        _ip("netns", "add", namespace)
        self._namespaces.append(namespace)
        _ip("link", "set", "lo", "up", namespace=namespace)
        _ip("link", "add", "eth0", "type", "veth", "peer", "name", self._port(index),
            namespace=namespace)  # fmt: skip
        _ip("link", "set", self._port(index), "netns", self.switch, namespace=namespace)
        _ip("link", "set", self._port(index), "master", "br0", "up", namespace=self.switch)
        _ip("addr", "add", f"{address}/24", "dev", "eth0", namespace=namespace)
        _ip("link", "set", "eth0", "up", namespace=namespace)
        self.hosts[name] = address
        return address

    def cut(self, host: str) -> None:
        """Take the host's switch port down: nothing reaches it nor leaves it any more."""
        self._set_port(host, "down")

    def mend(self, host: str) -> None:
        """Bring the host's switch port back up."""
        self._set_port(host, "up")

    def _set_port(self, host: str, state: str) -> None:
        index = list(self.hosts).index(host) + 1
        _ip("link", "set", self._port(index), state, namespace=self.switch)

    def close(self) -> None:
        """Delete every namespace (their veth pairs go with them) and the root's pair."""
        with contextlib.suppress(subprocess.SubprocessError):
            _ip("link", "del", f"{self.tag}h")
        for namespace in reversed(self._namespaces):
            with contextlib.suppress(subprocess.SubprocessError):
                _ip("netns", "del", namespace)
        self._namespaces.clear()


@contextlib.contextmanager
def network(hosts: Sequence[str]) -> Iterator[Network]:
    """A switch with `hosts` plugged in, torn down afterwards whatever happens."""
    net = Network()
    try:
        net.start()
        for host in hosts:
            net.add_host(host)
        yield net
    finally:
        net.close()
