"""Whether a bake runs: an image given up front wins, then one an earlier run baked from the same inputs
(still available), else Packer bakes a new one from SOURCE."""

from __future__ import annotations

from dataclasses import dataclass

GIVEN = "given"
REUSE = "reuse"
BAKE = "bake"


@dataclass(frozen=True)
class BakeDecision:
    action: str  # GIVEN, REUSE or BAKE
    image: str | None  # the image to use; None when it is to be baked
    source: str = ""  # what a bake starts from (the source or primal image)


def decide_bake(given: str | None, recorded: str | None, source: str = "") -> BakeDecision:
    if given:
        return BakeDecision(GIVEN, given, source)
    if recorded:
        return BakeDecision(REUSE, recorded, source)
    return BakeDecision(BAKE, None, source)
