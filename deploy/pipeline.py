"""A deploy, written once: its ordered stages, each a name, a decision and an action.

    build-app → copy-over → bake-primal → bake-carnivore → launch-asg → wait-health → shift-traffic → finish

A stage's decision reads what it needs of the account (once per run: deploy/facts.py) and returns a frozen
decision object (deploy/plans/stages.py) whose `lines()` are its plan; its action carries out exactly that object
and returns what the stage made (Made) for the next stage. From this one definition:

- the invoke tasks chain make-style: each stage's `needs` are its pre-tasks (deploy/chain.py), so `inv deploy`
  pulls the whole chain, `inv launch-asg` pulls the bakes, `inv wait-health` runs alone (it finds the waiting
  group in the account by its tags) and `inv shift-traffic` pulls wait-health (traffic only to a group found
  healthy); an image given up front (--image-id, IMAGE_ID) prunes the build and bakes;
- `--dry-run` (`plan`) asks every stage's decision in order, handing on what each would make, and prints their
  lines: what is built or baked or skipped and why, what is created with which settings, how long the health wait
  may take, what is retired and deleted;
- `inv rollback` runs the same stages from launch-asg with the image it picked (`run`).

A new stage is one more entry in STAGES (and a thin task in tasks.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Generic, Protocol, TypeVar

from deploy.aws.images import require_image
from deploy.aws.instances import require_instance_type
from deploy.cli import run_step
from deploy.environment import Environment
from deploy.invocation import current_invocation
from deploy.plans.bake import GIVEN
from deploy.plans.hand import given_image
from deploy.plans.stages import (
    ROLLBACK,
    Build,
    CarnivoreBake,
    Given,
    HealthWait,
    Launch,
    Made,
    PrimalBake,
    Request,
    Retirement,
    Staging,
    TrafficShift,
)
from deploy.steps.bake_carnivore import act_carnivore, decide_carnivore
from deploy.steps.bake_primal import act_primal, decide_primal
from deploy.steps.build_app import act_build, decide_build
from deploy.steps.copy_over import act_staging, decide_staging
from deploy.steps.deploy import act_retirement, decide_retirement
from deploy.steps.launch_asg import act_launch, decide_launch, refuse_before_launch
from deploy.steps.rollback import choose_target, decide_weight_rollback, roll_back_by_weight
from deploy.steps.shift_traffic import act_shift, decide_shift
from deploy.steps.wait_health import act_health, decide_health
from deploy.views.plan import show
from deploy.views.run_report import RunReport, current_report


class Decision(Protocol):
    def lines(self) -> list[str]: ...


D = TypeVar("D", bound=Decision)


@dataclass(frozen=True)
class Stage(Generic[D]):
    name: str  # as the plan, the run log and error messages say it
    task: str  # the invoke task that runs it alone
    decide: Callable[[Environment, Request, Made], D]
    act: Callable[[Environment, D, Made], Made]
    would: Callable[[D, Made], Made]  # what a dry run hands on: what the action would make
    needs: tuple[str, ...] = ()  # stages run before it when it runs as a task (make-style pre-tasks)
    bakes: bool = False  # needless when an image is given up front: its plan says "skip, image … is given"
    makes_image: bool = False  # its output is the image: a given image prunes its needs
    needs_setup: bool = False  # refuse before it when setup never ran: a deploy that could not launch bakes nothing


def _unchanged(decision: Any, made: Made) -> Made:
    return made


def _would_primal(decision: PrimalBake, made: Made) -> Made:
    return made.with_(primal=decision.bake.image, bake_group=made.bake_group or bool(decision.creates_group))


def _would_carnivore(decision: CarnivoreBake, made: Made) -> Made:
    return made.with_(image=decision.bake.image, by_hand=decision.bake.action == GIVEN, reusable=decision.reusable)


def _would_launch(decision: Launch, made: Made) -> Made:
    removed = frozenset(action.target for action in decision.plan.remove_first)
    return made.with_(group=decision.plan.group, launch_template=decision.plan.launch_template, removed=removed)


def _would_be_healthy(decision: HealthWait, made: Made) -> Made:
    return made.with_(healthy=decision.group)


def _would_promote(decision: TrafficShift, made: Made) -> Made:
    return made.with_(promoted=decision.group)


BUILD_APP: Stage[Build] = Stage("build-app", "build_app", decide_build, act_build, _unchanged, bakes=True)
COPY_OVER: Stage[Staging] = Stage(
    "copy-over", "copy_over", decide_staging, act_staging, _unchanged, needs=("build-app",), bakes=True
)
BAKE_PRIMAL: Stage[PrimalBake] = Stage(
    "bake-primal", "bake_primal", decide_primal, act_primal, _would_primal, bakes=True, needs_setup=True
)
BAKE_CARNIVORE: Stage[CarnivoreBake] = Stage(
    "bake-carnivore",
    "bake_carnivore",
    decide_carnivore,
    act_carnivore,
    _would_carnivore,
    needs=("copy-over", "bake-primal"),
    bakes=True,
    makes_image=True,
    needs_setup=True,
)
LAUNCH_ASG: Stage[Launch] = Stage(
    "launch-asg", "launch_asg", decide_launch, act_launch, _would_launch, needs=("bake-carnivore",)
)
WAIT_HEALTH: Stage[HealthWait] = Stage("wait-health", "wait_health", decide_health, act_health, _would_be_healthy)
# Run alone, shift-traffic first waits for the group to be healthy (wait-health finds it in the account): requests
# and the promotion go only to a group found healthy.
SHIFT_TRAFFIC: Stage[TrafficShift] = Stage(
    "shift-traffic", "shift_traffic", decide_shift, act_shift, _would_promote, needs=("wait-health",)
)
FINISH: Stage[Retirement] = Stage(
    "finish",
    "deploy",
    decide_retirement,
    act_retirement,
    _unchanged,
    needs=("launch-asg", "wait-health", "shift-traffic"),
)

STAGES: tuple[Stage[Any], ...] = (
    BUILD_APP,
    COPY_OVER,
    BAKE_PRIMAL,
    BAKE_CARNIVORE,
    LAUNCH_ASG,
    WAIT_HEALTH,
    SHIFT_TRAFFIC,
    FINISH,
)


def stage(name: str) -> Stage[Any]:
    """The stage NAME ("launch-asg") or of the task NAME ("launch_asg")."""
    found = next((s for s in STAGES if name in (s.name, s.task)), None)
    if found is None:
        raise KeyError(name)
    return found


def stage_of_task(task: str) -> Stage[Any] | None:
    return next((s for s in STAGES if s.task == task), None)


def prerequisites(task: str, image_given: bool) -> list[str]:
    """The tasks TASK pulls in before itself (make-style; each pulls its own): none when IMAGE_GIVEN prunes them."""
    found = stage_of_task(task)
    if found is None or (found.makes_image and image_given):
        return []
    return [stage(name).task for name in found.needs]


def _from(start: str) -> tuple[Stage[Any], ...]:
    index = STAGES.index(stage(start))
    return STAGES[index:]


def resolved(environment: Environment, request: Request) -> Request:
    """REQUEST with the image given by hand as the run sees it: --image-id, else IMAGE_ID."""
    if not request.by_hand:
        return request
    return replace(request, image_id=given_image(request.image_id, environment.config.image_id))


def plan(environment: Environment, request: Request, start: str = BUILD_APP.name) -> list[str]:
    """The dry run: every stage from START, decided in order on what the earlier ones would make; their lines.
    An image given up front: the stages that bake are one line, skipped."""
    request = resolved(environment, request)
    require_instance_type(environment)  # the run checks it before its first bake: fail the plan the same way
    if environment.load_balancer.exists():
        refuse_before_launch(environment, request.action)  # as the run does before its first bake
    made = Made(planned=True, image=request.image_id, by_hand=request.by_hand and request.image_id is not None)
    lines: list[str] = []
    stages = _from(start)
    if request.image_id:
        require_image(environment, request.image_id, "Image")
        lines += Given(tuple(s.name for s in STAGES if s.bakes), request.image_id).lines()
        stages = tuple(s for s in stages if not s.bakes)
    for each in stages:
        decision = each.decide(environment, request, made)
        lines += decision.lines()
        made = each.would(decision, made)
    return lines


def run_stage(environment: Environment, name: str, request: Request, made: Made) -> Made:
    """One stage: decide on what the run read and what the earlier stages made, carry it out; what it made.
    The run's report.html shows it (running, then its outcome)."""
    each = stage(name)
    report = run_report(environment)
    report.begin(each.name, request.action)
    try:
        if each.needs_setup:
            environment.load_balancer.require()
            refuse_before_launch(
                environment, request.action
            )  # refused before anything is baked, not after a failed health wait
        decision = each.decide(environment, resolved(environment, request), made)
        made = each.act(environment, decision, made)
        if each is FINISH and made.steps and made.summary is not None:  # the summary carries the steps' figures
            made = made.with_(summary={**made.summary, "steps": list(made.steps)})
    except BaseException as error:
        report.end(error=str(error).splitlines()[0] if str(error) else type(error).__name__)
        raise
    report.end(detail=made_text(each.name, made))
    return made


def run_report(environment: Environment) -> RunReport:
    """This run's report (one per invocation and environment, as its log folder)."""
    return current_report(environment.env, environment.log.dir)


def made_text(name: str, made: Made) -> str:
    """What the report says a stage made."""
    if name == FINISH.name and made.summary:
        return f"deployed {made.summary.get('image')} as {made.summary.get('group')}"
    if name == WAIT_HEALTH.name:
        return f"{made.healthy} healthy" if made.healthy else ""
    if name == SHIFT_TRAFFIC.name:
        steps = f" after {len(made.steps)} steps" if made.steps else ""
        return f"{made.promoted} promoted{steps}" if made.promoted else ""
    if name == LAUNCH_ASG.name:
        return made.group or ""
    if name == BAKE_PRIMAL.name:
        return made.primal or ""
    return made.image or "" if name == BAKE_CARNIVORE.name else ""


def rollback(
    environment: Environment, to: str | None = None, timeout_s: int | None = None, dry_run: bool = False
) -> dict[str, Any] | list[str]:
    """`inv rollback`: the deploy's own stages from launch-asg, with the image it picked (deployed before: not given
    by hand, so nothing is built or baked and its group is not tagged as given by hand); the plan or the summary.
    Within the window of the group the serving one replaced: a weight change back to it (deploy/steps/rollback.py)."""
    by_weight = decide_weight_rollback(environment, to)
    if by_weight is not None:
        if dry_run:
            return show(environment, by_weight.lines())
        return roll_back_by_weight(environment, by_weight)
    target, serving_image = choose_target(environment, to)
    environment.say(f"  rolling back from {serving_image or 'nothing'} to {target}")
    request = Request(image_id=target, by_hand=False, timeout_s=timeout_s, action=ROLLBACK)
    if dry_run:
        return show(environment, plan(environment, request, start=LAUNCH_ASG.name))
    return dict(run(environment, request, start=LAUNCH_ASG.name).summary or {})


def run_task(name: str, env: str | None, request: Request) -> Made:
    """Run the stage NAME as a task: it is handed what the earlier stages of this command line made (kept by the
    invocation, never on the environment), and hands on what it made."""

    def act(environment: Environment) -> Made:
        with current_invocation() as opened:
            made: list[Made] = opened.open(("made", environment.env), lambda: [Made()], lambda _: None)
        made[0] = run_stage(environment, name, request, made[0])
        return made[0]

    return run_step(name, env, act, locking=True)


def plan_task(env: str | None, request: Request, start: str = BUILD_APP.name) -> list[str]:
    """`--dry-run`: the plan from START, printed; the environment's AWS clients refuse every write."""
    return run_step(
        "deploy", env, lambda environment: show(environment, plan(environment, request, start)), dry_run=True
    )


def run(environment: Environment, request: Request, start: str = BUILD_APP.name, made: Made | None = None) -> Made:
    """Every stage from START, in order, each handed what the earlier ones made (a rollback: from launch-asg)."""
    given = resolved(environment, request).image_id
    made = made or Made(image=request.image_id, by_hand=request.by_hand and request.image_id is not None)
    for each in _from(start):
        if given and each.bakes and not each.makes_image:
            continue  # pruned as the chain prunes them: the stage that makes the image only checks the given one
        made = run_stage(environment, each.name, request, made)
    return made
