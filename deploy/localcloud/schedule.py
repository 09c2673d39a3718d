"""The embedded cloud's timing decisions for retirement, pure (no moto, no clock of their own): when a scheduled
action runs in the emulator's time, and when a deregistration's draining is over.

- A scheduled action put at wall time PUT_WALL (the server's clock, as AWS's) with StartTime START runs
  (START - PUT_WALL) AWS seconds after it was put; the emulator models AWS time LOCAL_TIME_SCALE times faster
  from that moment: it runs at PUT_CLOCK + (START - PUT_WALL) x scale on the runtime's clock. Its StartTime, as
  DescribeScheduledActions shows it, stays what was put.
- Draining (an instance deregistered from a classic load balancer with connection draining, or a target of an
  application load balancer's target group) ends when no request to it is in flight any more, at once when none
  was (as AWS does), and at the latest when the draining time (deregistration delay) is over; what is still in
  flight then is cut.
"""

from __future__ import annotations

from datetime import UTC, datetime


def as_utc(moment: datetime) -> datetime:
    """MOMENT as an aware UTC time (moto keeps request times naive, in UTC)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def runs_at(put_clock: float, put_wall: float, start: datetime, scale: float) -> float:
    """When (on the runtime's clock) an action put at PUT_CLOCK / PUT_WALL with StartTime START runs."""
    return put_clock + max(as_utc(start).timestamp() - put_wall, 0.0) * scale


def drain_over(now: float, end: float, in_flight: int) -> bool:
    """Whether a draining that ends at END at the latest is over at NOW, with IN_FLIGHT requests still running."""
    return in_flight <= 0 or now >= end
