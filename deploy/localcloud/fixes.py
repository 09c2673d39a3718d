"""Where moto differs from AWS, fixed inside the embedded cloud: each fix says what AWS does.

Applied on one condition: `patch_moto()` runs in the embedded cloud's server process (server.py) and in
tests that use moto in-process (tests/conftest.py). Production modules never know about them.
"""

from __future__ import annotations

from typing import Any

from moto.ec2.models import amis

_moto_image_init = amis.Ami.__init__


def _ebs_backed_image(self: Any, *args: Any, **kwargs: Any) -> None:
    # moto divergence: images made by CreateImage, CopyImage and RegisterImage report root device
    # type "standard"; on AWS an image made from an EBS-backed instance is "ebs". Packer's
    # amazon-ebs builder refuses a non-EBS source, so without this a carnivore image could not be
    # baked from a primal one. Built-in images pass their own type and are left as they are.
    kwargs.setdefault("root_device_type", "ebs")
    _moto_image_init(self, *args, **kwargs)


def patch_moto() -> None:
    amis.Ami.__init__ = _ebs_backed_image  # type: ignore[method-assign]  # replacing moto's method is the fix
