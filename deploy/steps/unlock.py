"""`inv unlock`: remove a stale deploy lock left by a crashed run, naming its holder."""

from __future__ import annotations

from deploy.environment import Environment


def unlock(environment: Environment) -> None:
    holder = environment.lock.force_unlock()
    if holder is None:
        environment.say(f"  no deploy lock is held on {environment.env}")
    else:
        environment.say(
            f"warning: removed the deploy lock of {environment.env} held by {holder.describe()}."
            " If that run is still going, it is no longer protected against a second deploy."
        )
