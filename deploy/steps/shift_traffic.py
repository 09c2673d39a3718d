"""`inv shift-traffic`: move the requests to the healthy new group by TRAFFIC_STEPS, judge each step from what AWS
measured, then promote the new group; or, when a step fails, send every request back to the serving group at once
and remove the new group.

A step: the listeners forward WEIGHT percent to the new group's target group (`set_weights`, one ModifyListener per
forwarding listener); STEP_SECONDS are observed (scaled on an emulator), the alarms of ALARM_NAMES read every poll
interval (one DescribeAlarms each); once the CloudWatch minutes holding the step are over and published, its
figures are read (one GetMetricData: the old and the new group's target groups) and judged (deploy/plans/traffic.py
`judge_step`). An alarm in ALARM during a step takes the requests back at once, within a poll interval.

TRAFFIC_STEPS=100 (the default), nothing serving yet, or the classic kind: all requests to the new group at once
(the ModifyListener the deploy's end sent before), then the promotion: no observation, no request more.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from deploy.aws.groups import environment_groups, tag_promoted
from deploy.aws.history import PROMOTED, entry, record
from deploy.aws.images import describe_image
from deploy.aws.loadbalancers.group_targets import GroupTargetGroups, target_group_name
from deploy.aws.metrics import alarm_states, minute_window, read_figures
from deploy.environment import Environment
from deploy.errors import DeployError
from deploy.execute import abort_new_group
from deploy.naming import tags_of
from deploy.plans.groups import serving_group
from deploy.plans.hand import counts_as_by_hand, group_launched_by_hand, protection_tags
from deploy.plans.pending import Pending, pending_launch
from deploy.plans.stages import DEPLOY, Made, Request, TrafficShift
from deploy.plans.traffic import ALARM, NO_FIGURES, Figures, StepDecision, Thresholds, judge_step
from deploy.views.report import StepReport
from deploy.views.run_report import current_report

MINUTE_S = 60  # CloudWatch's period of an application load balancer's metrics
# A minute's figures reach CloudWatch about a minute after it ends (AWS); read a step once that has passed.
PUBLISH_DELAY_S = 60


def weights_of(environment: Environment) -> GroupTargetGroups:
    """The load balancer as weights across target groups (the application kind: only it takes steps)."""
    balancer = environment.load_balancer
    assert isinstance(balancer, GroupTargetGroups), "only an application load balancer forwards by weight"
    return balancer


def promote(
    environment: Environment,
    group_name: str,
    image_id: str,
    action: str = DEPLOY,
    by_hand: bool = False,
    steps: list[dict[str, Any]] | None = None,
) -> None:
    """Mark the group as the one that serves and its image as deployed, in AWS itself (an image given by hand also
    as never to be deleted, in the same request); record it in the account's history, with the traffic STEPS'
    figures. BY_HAND: this run launched it with an image given by hand (else its tag says so)."""
    image = describe_image(environment, image_id)
    group = next((g for g in environment_groups(environment) if g.name == group_name), None)
    launched_by_hand = group_launched_by_hand(group.tags if group else {}, by_hand)
    image_tags = tags_of(image) if image else {}
    protect = protection_tags(image_tags, environment.env) if launched_by_hand and image else None
    tag_promoted(environment, group_name, image_id, protect)
    names = environment.names
    in_history = launched_by_hand or counts_as_by_hand(image_tags if image else None, names.app, names.env)
    seconds = environment.log.elapsed()
    record(environment, entry(action, PROMOTED, image_id, group_name, seconds, in_history, steps=steps))


def decide_shift(environment: Environment, request: Request, made: Made) -> TrafficShift:
    """The new group (wait-health's; run alone: the one launched and not promoted, found in the account), the group
    it takes the requests from (the one that serves now), and how: TRAFFIC_STEPS and their thresholds."""
    config = environment.config
    groups = [] if made.planned and not environment.load_balancer.exists() else environment_groups(environment)
    if made.planned or made.healthy:
        group, template, image = (made.healthy or made.group or ""), made.launch_template or "", made.image
    else:
        pending = pending_launch(groups)
        if not pending:
            raise DeployError(f"No newly launched group is waiting in {environment.env}: run `inv launch-asg` first.")
        group, template, image = pending.group, pending.launch_template or "", pending.image_id
    serving = serving_group([g for g in groups if g.name != group])
    weighted = config.load_balancer == "application"
    through: tuple[tuple[str, str], ...] = ()
    if weighted:
        balancer = weights_of(environment)
        own = environment.names.group_target_group(group)
        found = [(serving.name, target_group_name(balancer.group_arn(serving.name)))] if serving else []
        through = (*found, (group, own))
    return TrafficShift(
        group=group,
        launch_template=template,
        image=image,
        serving=serving.name if serving and weighted else None,
        steps=config.traffic_steps,
        step_seconds=config.step_seconds,
        modelled_s=environment.aws_seconds(config.step_seconds) if config.endpoint_url else None,
        thresholds=Thresholds.of(config),
        alarms=tuple(config.alarm_names or ()),
        poll_s=config.poll_seconds,
        target_groups=through,
        weighted=weighted,
        action=request.action,
        by_hand=made.by_hand,
    )


def act_shift(environment: Environment, decision: TrafficShift, made: Made) -> Made:
    steps = carry_out_shift(environment, decision)
    return made.with_(promoted=decision.group, steps=tuple(steps))


def carry_out_shift(environment: Environment, decision: TrafficShift) -> list[dict[str, Any]]:
    """Move the requests as decided, then promote the new group; the steps' records (none: all at once)."""
    group = decision.group
    steps: list[dict[str, Any]] = []
    if decision.stepped:
        steps = Steps(environment, decision).run()
    elif decision.serving is not None:
        environment.load_balancer.serve(group)
    # Nothing serves yet (or the classic kind): the deploy's end sends it every request, in the one ModifyListener
    # that also drops setup's shared target group.
    promote(environment, group, str(decision.image), decision.action, decision.by_hand, steps)
    if steps or decision.serving is not None:
        after = f" after {len(steps)} steps" if steps else ""
        environment.say(f"  {group} is serving{after}: promoted")
    else:
        environment.say(f"  {decision.at_once().replace('promote ', 'promoted ', 1)}")
    return steps


@dataclass
class Steps:
    """The steps of one shift, on the run's clock (environment.clock and .sleep: a test's fake clock moves them)."""

    environment: Environment
    decision: TrafficShift
    records: list[dict[str, Any]] = field(default_factory=list)
    wall0: float = field(default_factory=time.time)
    mono0: float = 0.0

    def __post_init__(self) -> None:
        self.mono0 = self.environment.clock()
        balancer = weights_of(self.environment)
        self.old_arn = balancer.group_arn(self.decision.serving)
        self.new_arn = balancer.group_arn(self.decision.group)
        self.balancer_arn = str(balancer.require()["LoadBalancerArn"])
        self.report = current_report(self.environment.env, self.environment.log.dir)

    def now(self) -> datetime:
        """Wall time (CloudWatch's timestamps) as the run's clock moves it."""
        return datetime.fromtimestamp(self.wall0 + self.environment.clock() - self.mono0, UTC)

    def run(self) -> list[dict[str, Any]]:
        decision = self.decision
        judged: StepDecision | None = None
        try:
            for number, weight in enumerate(decision.steps, start=1):
                judged = self.step(number, weight)
                self.records.append(judged.record())
                if not judged.passed:
                    break
        except BaseException as error:  # Ctrl-C, a failed request: never leave requests on an unjudged group
            interrupted = isinstance(error, KeyboardInterrupt | SystemExit)
            first = (str(error).splitlines() or [type(error).__name__])[0]
            self.abort("interrupted during the traffic steps" if interrupted else f"during the traffic steps: {first}")
            raise
        if judged is not None and not judged.passed:
            self.abort(f"step {judged.number}/{judged.steps} failed: {'; '.join(judged.reasons)}")
            raise DeployError(
                f"{judged.line()}. All requests went back to {decision.serving}, which keeps serving;"
                f" {decision.group} was removed. Fix the release and deploy again."
            )
        return self.records

    def step(self, number: int, weight: int) -> StepDecision:
        """One step: WEIGHT percent to the new group, observed, then judged (an alarm cuts it short)."""
        environment, decision = self.environment, self.decision
        balancer = weights_of(environment)
        balancer.set_weights({**balancer.weights(), self.old_arn: 100 - weight, self.new_arn: weight})
        environment.say(
            f"  step {number}/{len(decision.steps)}: {weight} % to {decision.group}, observed"
            f" {environment.aws_seconds(decision.step_seconds):g}s"
        )
        start = self.now()
        alarmed = self.observe(environment.aws_seconds(decision.step_seconds))
        end = self.now()
        if not alarmed:
            # The step's figures are in the minutes holding it: read once they are over and published.
            minute = environment.aws_seconds(MINUTE_S)
            _, last = minute_window(start, end, minute)
            ready = (last - end).total_seconds() + environment.aws_seconds(PUBLISH_DELAY_S)
            alarmed = self.observe(ready)
        if alarmed:
            balancer.serve(decision.serving or "")  # back at once, before anything is read
        figures = self.figures(start, end)
        states = alarmed or alarm_states(self.cloudwatch, decision.alarms)
        judged = judge_step(
            number, len(decision.steps), weight, decision.group, figures[1], states, decision.thresholds
        )
        environment.say(f"  {judged.line()}")
        previous = decision.serving or ""
        self.report.step(StepReport(start, self.now(), judged, figures[0], previous))
        return judged

    @property
    def cloudwatch(self) -> Any:
        return self.environment.aws.client("cloudwatch")

    def observe(self, seconds: float) -> dict[str, str]:
        """Wait SECONDS on the run's clock, reading the alarms every poll interval when ALARM_NAMES is set; the
        alarms' states as soon as one is in ALARM ({}: none was)."""
        alarms = self.decision.alarms
        seen: dict[str, str] = {}
        if seconds <= 0:
            return seen

        def check() -> tuple[bool, str]:
            if not alarms:
                return False, ""
            seen.update(alarm_states(self.cloudwatch, alarms))
            return any(state == ALARM for state in seen.values()), ""

        poll = float(self.environment.config.poll_seconds)
        done, _ = self.environment.waiter(seconds).until(check, first_after=min(poll, seconds))
        return dict(seen) if done else {}

    def figures(self, start: datetime, end: datetime) -> tuple[Figures, Figures]:
        """(the serving group's, the new group's) figures over START..END: one GetMetricData."""
        minute = self.environment.aws_seconds(MINUTE_S)
        found = read_figures(self.cloudwatch, self.balancer_arn, [self.old_arn, self.new_arn], start, end, minute)
        return found.get(self.old_arn, NO_FIGURES), found.get(self.new_arn, NO_FIGURES)

    def abort(self, reason: str) -> None:
        """Every request back to the serving group (one ModifyListener per listener), the new group removed, the
        abort recorded with the steps' figures."""
        decision = self.decision
        self.environment.load_balancer.serve(decision.serving or "")
        self.environment.say(f"  all requests back to {decision.serving}")
        pending = Pending(decision.group, decision.launch_template or None, decision.image)
        abort_new_group(self.environment, pending, reason=reason, action=decision.action, steps=self.records)


def shift_traffic(environment: Environment, action: str = DEPLOY) -> str:
    """The stage alone: move the requests to the healthy group launch-asg left waiting (found in the account), then
    promote it; the promoted group."""
    request = Request(action=action)
    decision = decide_shift(environment, request, Made())
    carry_out_shift(environment, decision)
    return decision.group
