"""What each stage of a deploy decided, as data: one frozen object per stage, made by the stage's decision
(deploy/pipeline.py) from what the run read, and said by its `lines()`: a dry run prints exactly these lines, and
the run then carries out exactly these objects. Also what a run asks for (Request) and what its stages made so
far (Made), handed from each stage to the next. Pure: no AWS here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from deploy.plans.actions import Action, would
from deploy.plans.bake import GIVEN, REUSE, BakeDecision
from deploy.plans.launch import LaunchPlan
from deploy.plans.traffic import Thresholds

# What every launch template of this tool sets, as both the plan and the run say it.
TEMPLATE_SETTINGS = "IMDSv2 required, encrypted"
DEPLOY = "deploy"
ROLLBACK = "rollback"


@dataclass(frozen=True)
class Request:
    """What the command line asks of a deploy (or a rollback): its flags, each None when not given."""

    image_id: str | None = None  # the image given (--image-id, IMAGE_ID, a rollback's target): nothing is baked
    by_hand: bool = True  # IMAGE_ID is given by hand (a rollback's target is not: it was deployed before)
    primal_id: str | None = None
    timeout_s: int | None = None
    keep_on_failure: bool = False
    keep_images: bool | None = None  # None: as CLEANUP says
    action: str = DEPLOY  # what the history records: deploy or rollback
    wait_retirement: bool = False  # --wait-retirement: return once AWS has emptied the outdated groups, deleted


@dataclass(frozen=True)
class Staged:
    """The folder copy-over staged for this run, and the digest of its files."""

    folder: Path
    digest: str


@dataclass(frozen=True)
class Made:
    """What the stages of this run made so far, handed to the next stage. A dry run carries what they would
    make: an image still to be baked is None there (its id is unknown until Packer made it)."""

    staged: Staged | None = None
    primal: str | None = None
    image: str | None = None
    by_hand: bool = False  # the image was given by hand: its group is tagged so, its promotion protects it
    group: str | None = None  # the group launch-asg launched (or reused)
    launch_template: str | None = None
    removed: frozenset[str] = frozenset()  # what launch-asg removed first (a leftover group and its template)
    healthy: str | None = None  # the group wait-health found healthy: shift-traffic moves requests to it
    promoted: str | None = None  # the group shift-traffic promoted: the deploy's end never retires it
    steps: tuple[Mapping[str, object], ...] = field(default=(), compare=False)  # shift-traffic's judged steps
    planned: bool = False  # a dry run's: what the stages would make
    # A dry run's: the image an earlier run baked from the same primal image, which the run launches instead of
    # baking if the app is unchanged (a dry run builds nothing, so it cannot know; its plan says both).
    reusable: str | None = None
    bake_group: bool = False  # a dry run's: the bake security group exists, or an earlier bake of this run makes it
    summary: Mapping[str, object] | None = field(default=None, compare=False)  # the deploy's, at its end

    def with_(self, **changes: object) -> Made:
        return replace(self, **changes)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Given:
    """The stages an image given up front makes unnecessary: nothing is built or baked."""

    stages: tuple[str, ...]
    image: str

    def lines(self) -> list[str]:
        return [f"{', '.join(self.stages)}: skip, image {self.image} is given"]


@dataclass(frozen=True)
class Build:
    command: str  # BUILD_COMMAND, {env} replaced
    folder: Path  # APP_DIR

    def lines(self) -> list[str]:
        return [f"build-app: would run `{self.command}` in {self.folder}"]


@dataclass(frozen=True)
class Staging:
    files: tuple[str, ...]  # APP_FILES
    folder: Path  # this run's own staging folder

    def lines(self) -> list[str]:
        return [f"copy-over: would stage {', '.join(self.files)} and app.env into {self.folder}, this run's own"]


@dataclass(frozen=True)
class PrimalBake:
    """bake-primal: the base image given, reused (baked from the same source and template earlier) or baked now."""

    bake: BakeDecision
    builder: str  # Packer's -only
    seed: tuple[str, ...] = ()  # on the embedded cloud: the base image it would create first (a dry run only)
    source_name: str = ""  # SOURCE_AMI when the source image does not exist yet (it is seeded first)
    creates_group: str = ""  # a dry run's: the bake security group this bake creates first (NAME-bake)

    def lines(self) -> list[str]:
        image, source = self.bake.image, self.bake.source or self.source_name
        if self.bake.action == GIVEN:
            return [f"bake-primal: skip, primal image {image} is given"]
        if self.bake.action == REUSE:
            return [f"bake-primal: skip, primal image {image} was baked from {source} by an earlier run"]
        return [
            *self.seed,
            *bake_group_lines("bake-primal", self.creates_group),
            f"bake-primal: would bake a primal image with Packer (-only={self.builder}) from {source}",
        ]


@dataclass(frozen=True)
class CarnivoreBake:
    """bake-carnivore: the deployment image given, reused (the same primal image, app and template) or baked now.
    APP_KNOWN: the staged app's digest is known (a dry run builds nothing: it names the image it would reuse if the
    app is unchanged)."""

    bake: BakeDecision
    staged: Staged | None
    app_known: bool = True
    reusable: str | None = None  # a dry run's: the newest image baked from the same primal image
    creates_group: str = ""  # a dry run's: the bake security group this bake creates first (NAME-bake)

    def lines(self) -> list[str]:
        if self.bake.action == GIVEN:
            return [f"bake-carnivore: skip, image {self.bake.image} is given"]
        if self.bake.action == REUSE:
            return [f"bake-carnivore: skip, image {self.bake.image} was baked from the same primal image and app"]
        source = self.bake.source or "the new primal image"
        unless = f"; skipped if the app is unchanged since {self.reusable} was baked" if self.reusable else ""
        return [
            *bake_group_lines("bake-carnivore", self.creates_group),
            f"bake-carnivore: would bake the deployment image from {source} plus the staged app{unless}",
        ]

    def __post_init__(self) -> None:
        assert self.reusable is None or not self.app_known, "only a dry run's decision is conditional"


@dataclass(frozen=True)
class Launch:
    """launch-asg: the group that will wait for its health: reused, or created (after removing a leftover)."""

    plan: LaunchPlan
    image: str | None  # None: the image this run bakes
    by_hand: bool
    capacity: int
    instance_type: str
    load_balancer: str
    subnet_ids: tuple[str, ...] = ()  # the group's: in zones that offer INSTANCE_TYPE
    security_group_id: str = ""  # the instances' (NAME-web)
    target_group: str = ""  # an ALB: the group's own target group, created first (in the listeners at weight 0)

    def template_text(self) -> str:
        return f"{self.plan.launch_template} ({self.image or 'the new image'}, {TEMPLATE_SETTINGS})"

    def group_text(self) -> str:
        return f"{self.plan.group}: {self.capacity} x {self.instance_type} behind {self.load_balancer}"

    def lines(self) -> list[str]:
        if self.plan.reused:
            return [f"launch-asg: skip, {self.plan.group} with {self.image} was launched earlier: it is the new group"]
        leftover = " (left over by an earlier unfinished run)"
        removals = [f"launch-asg: would {action.line()}{leftover}" for action in self.plan.remove_first]
        own = f"launch-asg: would create target group {self.target_group} (in the listeners at weight 0)"
        return [
            *removals,
            *([own] if self.target_group and not self.plan.reused else []),
            f"launch-asg: would create launch template {self.template_text()} and group {self.group_text()}",
        ]


@dataclass(frozen=True)
class HealthWait:
    """wait-health: how long it waits for which group, and what happens when it is not healthy in time."""

    group: str
    launch_template: str
    image: str | None
    timeout_s: int
    desired: int
    keep_on_failure: bool
    action: str = DEPLOY

    def lines(self) -> list[str]:
        otherwise = "detach it and keep it for debugging" if self.keep_on_failure else "remove it"
        return [
            f"wait-health: would wait up to {self.timeout_s}s for {self.desired}/{self.desired} healthy"
            f" {self.group}; if not healthy in time, {otherwise}"
        ]


@dataclass(frozen=True)
class TrafficShift:
    """shift-traffic: how the requests move to the new group (TRAFFIC_STEPS), how each step is judged, and what
    follows: the promotion after the last step, or all requests back to the serving group and the new group
    removed when a step fails."""

    group: str  # the new group
    launch_template: str
    image: str | None
    serving: str | None  # the group that serves now (None: none, or the classic kind: no steps)
    steps: tuple[int, ...]  # percentages; (100,): all at once
    step_seconds: int  # STEP_SECONDS
    modelled_s: float | None  # a step as an emulator runs it (LOCAL_TIME_SCALE); None: real AWS
    thresholds: Thresholds
    alarms: tuple[str, ...]  # ALARM_NAMES
    poll_s: int  # how often the alarms are read during a step
    target_groups: tuple[tuple[str, str], ...] = ()  # (group, its target group's name), the serving one first
    weighted: bool = True  # an application load balancer (classic: no weights)
    action: str = DEPLOY
    by_hand: bool = False

    def at_once(self) -> str:
        """What happens without steps (TRAFFIC_STEPS=100, nothing serving yet, or the classic kind)."""
        if not self.weighted:
            return f"promote {self.group} (classic load balancer: it serves beside the old group until that retires)"
        if self.serving is None:
            why = "; no steps" if self.steps != (100,) else ""
            return f"promote {self.group} (nothing serves yet{why}: it takes every request at the deploy's end)"
        if self.action == ROLLBACK:
            return f"send all requests to {self.group} at once (a rollback takes no steps), then promote it"
        return f"send all requests to {self.group}, then promote it"

    @property
    def stepped(self) -> bool:
        """Whether the requests move in steps (judged): TRAFFIC_STEPS other than 100 and a group to go back to."""
        return self.steps != (100,) and self.serving is not None

    def lines(self) -> list[str]:
        head = "shift-traffic: would"
        through = [f"{head} forward to {group} through target group {name}" for group, name in self.target_groups]
        if not self.stepped:
            return [*through, f"{head} {self.at_once()}"]
        seconds = f"{self.step_seconds}s" + (f" (modelled {self.modelled_s:g}s here)" if self.modelled_s else "")
        limits = self.thresholds
        latency = (
            f"p99 above MAX_LATENCY_MS {limits.max_latency_ms:,} ms"
            if limits.max_latency_ms is not None
            else "latency not checked (MAX_LATENCY_MS empty)"
        )
        alarms = (
            f"an alarm of {', '.join(self.alarms)} in ALARM (read every {self.poll_s}s)" if self.alarms else "no alarms"
        )
        shown = ", ".join(f"{step} %" for step in self.steps)
        return [
            *through,
            f"{head} send {shown} of the requests to {self.group}, the rest to {self.serving}, each step observed"
            f" {seconds}, then held until CloudWatch has published its last minute (about 1-2 min more on AWS) and"
            " judged from CloudWatch",
            f"{head} fail a step on 5xx above MAX_ERROR_RATE {limits.max_error_rate:g} %, {latency}, {alarms};"
            f" with fewer than MIN_REQUESTS {limits.min_requests:,} requests a step passes with a warning",
            f"{head} promote {self.group} after the last step; if a step fails, send all requests back to"
            f" {self.serving} at once and remove {self.group}",
        ]


@dataclass(frozen=True)
class Retirement:
    """The deploy's end: what it retires and deletes (deploy/plans/cleanup.py decided), then its summary."""

    actions: tuple[Action, ...] = field(default=())
    serving: str = ""  # a run's: the group that serves now (pinned: never retired)
    image: str | None = None  # its image
    # A dry run's, when the deployment image may be reused (Made.reusable): what differs if the app is unchanged.
    reusable: str | None = None
    spared: tuple[Action, ...] = ()  # done if the app changed, not if it is unchanged
    extra: tuple[Action, ...] = ()  # done only if the app is unchanged
    wait: bool = False  # --wait-retirement
    sweep: bool = True  # a run's: the cleanup after the wait looks for crashed runs' leftovers too

    def lines(self) -> list[str]:
        unchanged = f"if the app is unchanged since {self.reusable} was baked"
        handed = any(action.op in ("scale-in", "keep-group") for action in self.actions)
        waits = ["cleanup: would wait until AWS has emptied the outdated groups, then delete them"]
        return [
            *(f"cleanup: {line}" for line in plan_lines(list(self.actions))),
            *(f"cleanup: {unchanged}, would not {action.line()}" for action in self.spared),
            *(f"cleanup: {unchanged}, would {action.line()} too" for action in self.extra),
            *(waits if self.wait and handed else []),
        ]


def bake_group_lines(stage: str, group: str) -> list[str]:
    return [f"{stage}: would create security group {group} (Packer's build instances)"] if group else []


def plan_lines(actions: list[Action]) -> list[str]:
    return would(actions) or ["nothing to retire"]
