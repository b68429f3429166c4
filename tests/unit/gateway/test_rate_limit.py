"""The gateway's token bucket per client."""

from __future__ import annotations

from gateway.security import MAX_CLIENTS, ClientRateLimit


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_passes_then_the_rate_applies_and_the_wait_is_told() -> None:
    clock = Clock()
    limit = ClientRateLimit(per_s=2.0, burst=3, clock=clock)
    assert [limit.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limit.take("a") == 0.5  # one request refills in 1/2 s
    assert limit.take("b") == 0.0  # another client has its own bucket
    clock.now += 0.25
    assert limit.take("a") == 0.25  # a refused request takes nothing
    clock.now += 0.25
    assert limit.take("a") == 0.0
    clock.now += 60
    assert [limit.take("a") for _ in range(4)][-1] > 0  # refills to the burst, no further


def test_memory_stays_bounded_by_forgetting_the_least_recent_clients() -> None:
    limit = ClientRateLimit(per_s=1.0, burst=1, clock=Clock())
    for client in range(MAX_CLIENTS + 10):
        limit.take(str(client))
    assert limit.take("5") == 0.0  # forgotten, so it starts with a full bucket
    assert limit.take(str(MAX_CLIENTS + 9)) > 0
