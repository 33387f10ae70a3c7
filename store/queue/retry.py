"""Retry policies: exponential backoff with jitter, with the backfill presets.

The delay before attempt ``n + 1`` (after ``n`` failed attempts) is
``min(max_delay, base_delay * factor ** (n - 1))``, then reduced by a random fraction of
up to ``jitter`` of itself, so that a burst of failures does not come back as a burst.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from store.errors import InvalidTask


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """How a failed task is retried.

    ``max_attempts`` counts every start, the first one included (1 = never retried).
    """

    max_attempts: int = 5
    base_delay: float = 1.0
    factor: float = 2.0
    max_delay: float = 300.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int):
            raise InvalidTask("max_attempts must be an integer")
        if not 1 <= self.max_attempts <= 1000:
            raise InvalidTask(f"max_attempts must be between 1 and 1000, got {self.max_attempts}")
        if self.base_delay < 0 or self.max_delay < 0:
            raise InvalidTask("retry delays must not be negative")
        if self.factor < 1:
            raise InvalidTask(f"retry factor must be at least 1, got {self.factor}")
        if not 0 <= self.jitter <= 1:
            raise InvalidTask(f"retry jitter must be between 0 and 1, got {self.jitter}")

    @classmethod
    def preset(cls, name: str, *, max_attempts: int | None = None) -> RetryPolicy:
        """Return a named preset (``default``, ``fast``, ``aggressive``, ``conservative``)."""
        try:
            policy = PRESETS[name]
        except KeyError:
            known = ", ".join(sorted(PRESETS))
            raise InvalidTask(f"unknown retry policy {name!r} (known: {known})") from None
        if max_attempts is not None:
            policy = cls(
                max_attempts=max_attempts,
                base_delay=policy.base_delay,
                factor=policy.factor,
                max_delay=policy.max_delay,
                jitter=policy.jitter,
            )
        return policy

    def delay(self, failed_attempts: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after ``failed_attempts`` failures (``>= 1``) before the next try."""
        exponent = max(failed_attempts - 1, 0)
        # Cap the exponent so a large attempt count cannot overflow the float.
        raw = self.base_delay * (self.factor ** min(exponent, 64))
        capped = min(self.max_delay, raw)
        draw = (rng or random).random()
        return capped * (1.0 - self.jitter * draw)

    def next_run_at(
        self, *, attempts: int, now: datetime, rng: random.Random | None = None
    ) -> datetime | None:
        """When to run again after ``attempts`` starts ended in failure; ``None`` = give up."""
        if attempts >= self.max_attempts:
            return None
        return now + timedelta(seconds=self.delay(attempts, rng))

    def to_json(self) -> dict[str, Any]:
        """The policy as a JSON object, as persisted beside the task."""
        return {
            "maxAttempts": self.max_attempts,
            "baseDelay": self.base_delay,
            "factor": self.factor,
            "maxDelay": self.max_delay,
            "jitter": self.jitter,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RetryPolicy:
        """Inverse of :meth:`to_json`."""
        return cls(
            max_attempts=int(data["maxAttempts"]),
            base_delay=float(data["baseDelay"]),
            factor=float(data["factor"]),
            max_delay=float(data["maxDelay"]),
            jitter=float(data["jitter"]),
        )


PRESETS: dict[str, RetryPolicy] = {
    # A sensible middle ground: five starts spread over about half a minute.
    "default": RetryPolicy(max_attempts=5, base_delay=1.0, factor=2.0, max_delay=300.0),
    # Quick turnaround for cheap, flaky calls: three starts within a few hundred ms.
    "fast": RetryPolicy(max_attempts=3, base_delay=0.1, factor=2.0, max_delay=30.0),
    # Critical work that must get through: many tries, growing to five minutes apart.
    "aggressive": RetryPolicy(max_attempts=12, base_delay=0.5, factor=2.0, max_delay=300.0),
    # Heavy or rate-limited work: few tries, far apart.
    "conservative": RetryPolicy(max_attempts=4, base_delay=30.0, factor=3.0, max_delay=3600.0),
}
