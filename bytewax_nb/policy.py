"""When a process that died is started again, and when its bee is given up on.

Apart from the supervisor that applies it (as jupyter_client keeps its restarter apart
from its kernel manager), so the rule reads in one place and is tested without a
process.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .wiring import Slot

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

    def gives_up(self, slot: Slot) -> bool:
        """A process that never served has died often enough: the change it is part of fails."""
        return not slot.ever_ready and slot.failures >= self.start_failures

    def failing(self, slots: Iterable[Slot], ready: int) -> bool:
        return ready == 0 and any(s.failures >= self.failing_after for s in slots)


RESTARTS = RestartPolicy()
