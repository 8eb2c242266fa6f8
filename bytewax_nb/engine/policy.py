"""When a process that died is started again, and when its bee is given up on.

Apart from the supervisor that applies it (as jupyter_client keeps its restarter apart
from its kernel manager), so the rule reads in one place and is tested without a
process.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["RESTARTS", "RestartPolicy"]


@dataclass(frozen=True)
class RestartPolicy:
    """Back-off doubling from `first_delay` to `max_delay`; the failure count of a slot
    starts anew once one of its processes serves."""

    first_delay: float = 0.1  # seconds before the first restart
    max_delay: float = 5.0
    # a change (start, deploy, scale) whose new process exits this many times before it
    # ever served fails, and is undone: the user's code cannot start
    start_failures: int = 3
    # a bee whose slots failed this many times in a row with no replica ready is failing:
    # its gateways answer 503 at once instead of letting callers wait for it
    failing_after: int = 3

    def delay(self, failures: int) -> float:
        """Seconds to wait before starting a slot again after its `failures`-th exit."""
        return min(self.first_delay * 2.0 ** max(failures - 1, 0), self.max_delay)

    def gives_up(self, failures: int, ever_ready: bool) -> bool:
        """A slot whose processes never served has failed often enough: the change it is
        part of fails."""
        return not ever_ready and failures >= self.start_failures

    def failing(self, failures: Iterable[int], ready: int) -> bool:
        """A bee with no replica ready whose slots keep failing (`failures` per slot)."""
        return ready == 0 and any(n >= self.failing_after for n in failures)


RESTARTS = RestartPolicy()
