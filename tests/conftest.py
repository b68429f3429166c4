"""Fixtures shared by every test layer."""

from __future__ import annotations

import socket

import pytest


def unused_port() -> int:
    """A TCP port nothing listens on right now (for subprocess servers and dead upstreams)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def free_port() -> int:
    return unused_port()
