"""What the runtime, the balancers and the moto hooks share without importing one another: moto's backends as
they read them (without creating any), and `Host`, what the balancers ask of the runtime.

Imported only where moto runs for the embedded cloud: the server process, and tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

from moto.ec2.models import ec2_backends

from deploy.localcloud.apps import AppImage, Timing


def backends(backend_dict: Any) -> Iterator[Any]:
    """Every region backend of a moto service that exists, without creating any (moto creates them on access)."""
    for account_id in list(dict.keys(backend_dict)):
        account = dict.__getitem__(backend_dict, account_id)
        for region in list(dict.keys(account)):
            yield dict.__getitem__(account, region)


def instance_by_id(instance_id: str) -> Any:
    """The moto instance INSTANCE_ID, in whichever account and region it is, or None."""
    for backend in backends(ec2_backends):
        found = backend.get_instance_by_id(instance_id)
        if found is not None:
            return found
    return None


class Host(Protocol):
    """What the balancers ask of the runtime: its timing, what an instance runs, and where it answers."""

    timing: Timing

    def app_of(self, instance: Any) -> AppImage | None:
        """What INSTANCE runs (None: a record only, nothing runs on it)."""

    def address_of(self, instance_id: str, port: int) -> int | None:
        """The loopback port where INSTANCE_ID answers on its port PORT, or None (nothing listens there)."""
