"""The embedded cloud's process: moto's own server mode, with the fixes of deploy/localcloud/fixes.py applied,
running what was baked (deploy/localcloud/runtime.py: app processes; balancers.py: load balancer endpoints),
with the runtime's hooks into moto (deploy/localcloud/hooks.py) installed: the server process is their one condition.

Run as `python -m deploy.motoserver -H 127.0.0.1 -p PORT` (same flags as `python -m moto.server`).
"""

from __future__ import annotations

import sys

from moto.server import main as moto_main

from deploy.localcloud.fixes import patch_moto
from deploy.localcloud.hooks import hook_moto
from deploy.localcloud.runtime import running


def main(argv: list[str]) -> None:
    """Apply the fixes and the runtime's hooks, then serve until stopped (moto's own command line: -H HOST -p PORT)."""
    patch_moto()  # where moto differs from AWS (also applied in tests)
    hook_moto()  # what moto answers from what runs (this process only), wrapping the fixes
    with running(argv):  # the apps and load balancers of what was baked, stopped with the server
        moto_main(argv)


if __name__ == "__main__":
    main(sys.argv[1:])
