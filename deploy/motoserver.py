"""The embedded cloud's process: moto's own server mode, plus visible fixes where moto differs from AWS.

Run as `python -m deploy.motoserver -H 127.0.0.1 -p PORT` (same flags as `python -m moto.server`).
"""

from __future__ import annotations

import sys
from typing import Any

from moto.ec2.models import amis
from moto.server import main as moto_main

_moto_image_init = amis.Ami.__init__


def _ebs_backed_image(self: Any, *args: Any, **kwargs: Any) -> None:
    # moto divergence: images made by CreateImage, CopyImage and RegisterImage report root device
    # type "standard"; on AWS an image made from an EBS-backed instance is "ebs". Packer's
    # amazon-ebs builder refuses a non-EBS source, so without this a carnivore image could not be
    # baked from a primal one. Built-in images pass their own type and are left as they are.
    kwargs.setdefault("root_device_type", "ebs")
    _moto_image_init(self, *args, **kwargs)


def patch_moto() -> None:
    amis.Ami.__init__ = _ebs_backed_image  # type: ignore[method-assign]


if __name__ == "__main__":
    patch_moto()
    sys.exit(moto_main(sys.argv[1:]))
