"""The "given by hand" rule, in one place: an image named on the command line (--image-id) or in the env file
(IMAGE_ID) is given by hand. Such an image is never built or baked, its group is tagged so, its promotion tags
the image as never to be deleted (in the account), and a deploy of it spends no request on crashed runs' leftovers.

Pure: tags in, answers out. deploy/aws writes and reads the tags; the steps ask here what they mean.
"""

from __future__ import annotations

from typing import Any

from deploy.naming import made_by_tool

HAND_TAG = "GivenByHand"  # on an image given with --image-id: the environments it was given to; never deleted
GROUP_HAND_TAG = "GivenByHand"  # on a group launched with an image given by hand (--image-id)
CARNIVORE = "carnivore"


def given_image(flag: str | None, configured: str | None) -> str | None:
    """The image given by hand to this run: --image-id, else IMAGE_ID; None when the run bakes its own."""
    return flag or configured or None


def sweeps_leftovers(given: str | None) -> bool:
    """Whether a deploy's cleanup also looks for crashed runs' leftovers: when it bakes (no image given), as its
    dry run and its end alike decide. A deploy of an image given up front spends no request on them (issue 13)."""
    return given is None


def group_tags(by_hand: bool) -> dict[str, str]:
    """The tag of a group launched with an image given by hand: its promotion protects the image."""
    return {GROUP_HAND_TAG: "yes"} if by_hand else {}


def group_launched_by_hand(group_tags: dict[str, str], launched_by_hand_now: bool = False) -> bool:
    """Whether a group was launched with an image given by hand: this run says so, or its tag does."""
    return launched_by_hand_now or bool(group_tags.get(GROUP_HAND_TAG))


def protection_tags(image_tags: dict[str, str], env: str) -> dict[str, str]:
    """The tag that marks an image given by hand as never to be deleted: it names every environment it was given to
    (cleanup and destroy read it from any machine). Written when a group of it is promoted, with its Deployed tag."""
    given_to = set(image_tags.get(HAND_TAG, "").split()) | {env}
    return {HAND_TAG: " ".join(sorted(given_to))}


def protected(image_tags: dict[str, str]) -> bool:
    """Never to delete: given by hand (--image-id) to some environment, as its tag says."""
    return bool(image_tags.get(HAND_TAG))


def promoted_by_hand(entries: list[dict[str, Any]]) -> set[str]:
    """The images the account's history marks as promoted by hand (given with --image-id): never deleted, even
    where their tag could not be written (an image another account shares)."""
    return {str(e["image"]) for e in entries if e.get("by_hand") and e.get("outcome") == "promoted" and e.get("image")}


def counts_as_by_hand(image_tags: dict[str, str] | None, app: str, env: str) -> bool:
    """Whether an image counts as given by hand in the history: tagged so for ENV, or not a deployment image this
    tool baked for this environment at all (an image from elsewhere: unknown image counts too)."""
    tags = image_tags or {}
    baked_here = made_by_tool(tags, app, env) and tags.get("Role") == CARNIVORE
    return env in tags.get(HAND_TAG, "").split() or not baked_here
