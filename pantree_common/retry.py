"""One retry policy for the model endpoints Pantree calls over HTTP (embeddings, chat).

Busy or failing answers (408, 409, 425, 429, 5xx) and network failures are worth another
attempt; the wait between attempts is jittered exponential backoff, stretched to what the
server's Retry-After asked for (capped, so a confused server cannot park a caller for hours).
Callers raise Retryable for those failures and run their call under tenacity with Backoff.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import tenacity

RETRYABLE_STATUS = frozenset({408, 409, 425, 429})
MAX_RETRY_AFTER_S = 30.0


class Retryable(Exception):
    """A failure that another attempt may not have (busy, restarting or unreachable)."""

    def __init__(self, detail: str, retry_after_s: float | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retry_after_s = retry_after_s


def retryable_status(status: int) -> bool:
    """Whether an HTTP status says "busy or broken for now" rather than "wrong request"."""
    return status in RETRYABLE_STATUS or status >= 500


def retry_after_s(value: str | None) -> float | None:
    """Seconds of a Retry-After header (the HTTP-date form is ignored)."""
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


class Backoff:
    """tenacity wait: jittered exponential backoff, at least the failure's Retry-After."""

    def __init__(self, backoff_s: float, max_backoff_s: float) -> None:
        self._jitter = tenacity.wait_random_exponential(multiplier=backoff_s, max=max_backoff_s)

    def __call__(self, state: tenacity.RetryCallState) -> float:
        delay = float(self._jitter(state))
        error = state.outcome.exception() if state.outcome is not None else None
        if isinstance(error, Retryable) and error.retry_after_s is not None:
            delay = max(delay, min(error.retry_after_s, MAX_RETRY_AFTER_S))
        return delay


def log_retry(
    log: logging.Logger, what: str, attempts: int
) -> Callable[[tenacity.RetryCallState], None]:
    """A tenacity before_sleep hook: one warning per retry naming `what` failed and why."""

    def before_sleep(state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        wait = state.next_action.sleep if state.next_action is not None else 0.0
        log.warning(
            "%s: %s; attempt %d of %d, retrying in %.2f s",
            what,
            error,
            state.attempt_number,
            attempts,
            wait,
        )

    return before_sleep
