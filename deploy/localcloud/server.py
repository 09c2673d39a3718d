"""The embedded cloud's process: moto's own server mode, with the fixes of deploy/localcloud/fixes.py applied.

Run as `python -m deploy.motoserver -H 127.0.0.1 -p PORT` (same flags as `python -m moto.server`).
"""

from __future__ import annotations

import sys

from moto.server import main as moto_main

from deploy.localcloud.fixes import patch_moto


def main(argv: list[str]) -> None:
    """Apply the fixes, then serve until stopped (moto's own command line: -H HOST -p PORT)."""
    patch_moto()
    moto_main(argv)


if __name__ == "__main__":
    main(sys.argv[1:])
