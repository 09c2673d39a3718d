"""The embedded cloud's process: moto's own server mode, with the fixes of deploy/localcloud/fixes.py applied,
running what was baked (deploy/localcloud/runtime.py: app processes; balancers.py: load balancer endpoints).

Run as `python -m deploy.motoserver -H 127.0.0.1 -p PORT` (same flags as `python -m moto.server`).
"""

from __future__ import annotations

import sys

from moto.server import main as moto_main

from deploy.localcloud.fixes import patch_moto
from deploy.localcloud.runtime import running


def main(argv: list[str]) -> int | None:
    patch_moto()
    with running(argv):
        return moto_main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
