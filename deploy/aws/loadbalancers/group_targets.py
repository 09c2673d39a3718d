"""An application load balancer's target group per group: each group launched gets its own (named by
`Names.group_target_group`, HTTP on APP_PORT, tagged App, Env and Group), joins the listeners' forward action at
weight 0 before its health wait (AWS health checks only a target group a listener references), takes every request
when it serves, and leaves (deleted) once its group is gone. The shared `tg-NAME` of the earlier layout is moved from
on an environment's next deploy."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from deploy import facts
from deploy.aws.clients import collect, or_none
from deploy.aws.loadbalancers.base import LoadBalancerSettings, Until
from deploy.facts import Facts
from deploy.naming import Names, tag_list
from deploy.plans.traffic import current_weights, forward_action

GROUP_TARGET_GROUP = "target-group:"  # + a group's own target group's name: its description, in the memo


def target_group_name(arn: str) -> str:
    """A target group's name, from its ARN (…:targetgroup/NAME/ID)."""
    return arn.split(":targetgroup/", 1)[-1].split("/", 1)[0]


class GroupTargetGroups:
    """The part of ApplicationLoadBalancer (deploy/aws/loadbalancers/application.py) that manages the groups' own
    target groups and the listeners' weights; what it uses of the load balancer is declared here."""

    names: Names
    known: Facts
    settings: LoadBalancerSettings
    say: Callable[[str], None]
    target_group_name: Any  # the shared tg-NAME (a property of the load balancer)

    @property
    def elbv2(self) -> Any:
        raise NotImplementedError

    def exists(self) -> bool:
        raise NotImplementedError

    def require(self) -> dict[str, Any]:
        raise NotImplementedError

    def require_description(self) -> dict[str, Any]:
        """What a deploy needs: the load balancer (each group brings its own target group)."""
        return self.require()

    def listeners(self, load_balancer_arn: str) -> dict[int, dict[str, Any]]:
        raise NotImplementedError

    def _remember_listener(self, answer: dict[str, Any]) -> None:
        raise NotImplementedError

    def target_group_arn(self) -> str:
        raise NotImplementedError

    # --- a target group per group ---------------------------------------------------------------

    def owns_target_group(self, arn: str) -> bool:
        """Whether ARN is this environment's target group: the shared one of the earlier layout, or a group's own."""
        name = target_group_name(arn)
        return name == self.target_group_name or name.startswith(self.names.group_target_group_prefix)

    def describe_group_target_group(self, group_name: str) -> dict[str, Any] | None:
        """GROUP's own target group (None: it has none: a group of the earlier layout), read once per run."""
        name = self.names.group_target_group(group_name)

        def read() -> dict[str, Any] | None:
            found = or_none(lambda: self.elbv2.describe_target_groups(Names=[name])["TargetGroups"])
            return found[0] if found else None

        return self.known.once(GROUP_TARGET_GROUP + name, read)

    def environment_target_groups(self) -> list[dict[str, Any]]:
        """Every target group of this environment (the shared one, each group's own), by name."""
        found = collect(self.elbv2, "describe_target_groups", "TargetGroups")
        return sorted(
            (group for group in found if self.owns_target_group(str(group["TargetGroupArn"]))),
            key=lambda group: str(group["TargetGroupName"]),
        )

    def group_arn(self, group_name: str | None) -> str:
        """The target group GROUP_NAME is served through: its own, else the shared tg-NAME of the earlier layout."""
        if group_name and self.exists():  # in the listeners (from launch until its group is deleted): no read
            name = self.names.group_target_group(group_name)
            listed = next((arn for arn in self.weights() if target_group_name(arn) == name), None)
            if listed:
                return listed
        own = self.describe_group_target_group(group_name) if group_name else None
        return str(own["TargetGroupArn"]) if own else self.target_group_arn()

    def forwarding(self) -> dict[int, dict[str, Any]]:
        """The listeners that forward (HTTP 80, or HTTPS 443 with a certificate: 80 then redirects), by port."""
        found = self.require()
        listeners = self.listeners(found["LoadBalancerArn"])
        return {port: listener for port, listener in listeners.items() if current_weights(listener["DefaultActions"])}

    def weights(self) -> dict[str, int]:
        """{target group ARN: weight} the listeners forward with (the first forwarding listener's; all say the same)."""
        listeners = self.forwarding()
        return current_weights(listeners[min(listeners)]["DefaultActions"]) if listeners else {}

    def set_weights(self, weights: dict[str, int]) -> None:
        """Forward with WEIGHTS on every forwarding listener that does not already: one ModifyListener each."""
        wanted = [{"TargetGroupArn": arn, "Weight": weight} for arn, weight in weights.items()]
        for listener in self.forwarding().values():
            if current_weights(listener["DefaultActions"]) != weights:
                answer = self.elbv2.modify_listener(
                    ListenerArn=listener["ListenerArn"], DefaultActions=forward_action(wanted)
                )
                self._remember_listener(answer)

    def group_attachment(self, group_name: str) -> dict[str, Any]:
        """GROUP's own target group (created: HTTP on APP_PORT, the health check, tagged App, Env and Group), in the
        listeners' forward action at weight 0 before the group exists: AWS health checks only a target group a
        listener references, and weight 0 sends it no request."""
        arn = self._ensure_group_target_group(group_name)
        current = self.weights()
        if arn not in current:
            self.set_weights({**current, arn: 0})
        return {"TargetGroupARNs": [arn]}

    def _ensure_group_target_group(self, group_name: str) -> str:
        found = self.describe_group_target_group(group_name)
        if found is not None:  # an earlier attempt made it
            return str(found["TargetGroupArn"])
        health = self.settings.health
        name = self.names.group_target_group(group_name)
        created = self.elbv2.create_target_group(
            Name=name,
            Protocol="HTTP",
            Port=health.port,
            VpcId=self.require_description()["VpcId"],
            TargetType="instance",
            Tags=tag_list(self.names.tags(Group=group_name)),
            **health.as_target_group(),
        )["TargetGroups"][0]
        self.known.put(GROUP_TARGET_GROUP + name, created)  # AWS's default deregistration delay is 300 s
        self.say(f"  created target group {name} for {group_name} (HTTP:{health.port}, health check {health.path})")
        return str(created["TargetGroupArn"])

    def serve(self, group_name: str, leaving: Sequence[str] = ()) -> None:
        """All requests to GROUP's target group, every other one of the action kept at weight 0 (its targets drain
        as their groups retire; health checks go on, ready to take requests back) but those named LEAVING (their
        groups are empty, or they serve no group): out of the listeners in the same request."""
        arn = self.group_arn(group_name)
        others = {other: 0 for other in self.weights() if target_group_name(other) not in leaving}
        for other in self.weights().keys() - others.keys():  # what `release` deletes next, known without a read
            name = target_group_name(other)
            if not self.known.knows(GROUP_TARGET_GROUP + name):
                self.known.put(GROUP_TARGET_GROUP + name, {"TargetGroupArn": other, "TargetGroupName": name})
        self.set_weights({**others, arn: 100})

    def stand_by(self, group_name: str, raw_group: dict[str, Any]) -> None:
        return None  # weight 0 (`serve` gave every request to the serving group): health checked, ready

    def restore(self, raw_group: dict[str, Any], raw_from: dict[str, Any], until: Until) -> None:
        arns = [arn for arn in raw_group.get("TargetGroupARNs", []) if self.owns_target_group(arn)]
        arn = arns[0] if arns else self.group_arn(raw_group["AutoScalingGroupName"])
        self.set_weights({**dict.fromkeys(self.weights(), 0), arn: 100})

    def forwarded_target_groups(self) -> set[str]:
        return {target_group_name(arn) for arn in self.weights()} if self.exists() else set()

    def take_back(self, serving: str | None, group_name: str) -> bool:
        """No request to GROUP_NAME any more (an aborted step, or a killed run's leftover before it is removed): all
        of them to SERVING (one ModifyListener per listener); without SERVING, GROUP_NAME's weight to 0 when another
        target group has weight (never a listener forwarding nowhere). Whether the weights changed; no write when
        GROUP_NAME takes no request (its weight is read from what the run read: no request)."""
        own = self.describe_group_target_group(group_name)
        current = self.weights()
        arn = str(own["TargetGroupArn"]) if own else None
        if arn is None or not current.get(arn):
            return False
        if serving is not None and serving != group_name:
            self.serve(serving)
            return True
        if not sum(weight for other, weight in current.items() if other != arn):
            return False
        self.set_weights({**current, arn: 0})
        return True

    def release(self, serving: str | None, groups: list[str]) -> list[str]:
        """Take the target groups of GROUPS (retired, or an aborted launch) out of the listeners, then delete them;
        the shared tg-NAME of the earlier layout too, once SERVING (which keeps its weight) no longer uses it.
        What was deleted, one line each."""
        doomed = {self.group_arn(group): group for group in groups if self.describe_group_target_group(group)}
        # The shared tg-NAME, known by its name in the listeners' action (no read): it goes once SERVING has its own.
        left = self.known.get(GROUP_TARGET_GROUP + self.target_group_name)  # `serve` took it out already
        shared = next((arn for arn in self.weights() if target_group_name(arn) == self.target_group_name), None)
        shared = shared or (str(left["TargetGroupArn"]) if left else None)
        if shared is not None and serving is not None and self.group_arn(serving) != shared:
            doomed[shared] = self.target_group_name
        serving_arn = self.group_arn(serving) if serving else None
        kept = {
            arn: 100 if arn == serving_arn else weight for arn, weight in self.weights().items() if arn not in doomed
        }
        if kept and sum(kept.values()):
            self.set_weights(kept)
        elif doomed.keys() & self.weights().keys():
            return []  # nothing else would serve: the listener keeps them (never a listener forwarding nowhere)
        deleted = []
        for arn in doomed:
            self.elbv2.delete_target_group(TargetGroupArn=arn)
            name = target_group_name(arn)
            self.known.forget(GROUP_TARGET_GROUP + name, facts.TARGET_GROUP)
            deleted.append(f"deleted target group {name}")
        return deleted

    def group_weight(self, raw_group: dict[str, Any]) -> int | None:
        weights = self.weights()
        return max((weights.get(arn, 0) for arn in raw_group.get("TargetGroupARNs", [])), default=0)

    def serving_ports(self) -> set[int]:
        if not self.exists():
            return set()
        arns = [
            arn for arn, weight in self.weights().items() if weight and target_group_name(arn) != self.target_group_name
        ]
        if not arns:
            return set()  # the shared tg-NAME (setup converges its port): nothing more to keep open
        found = self.elbv2.describe_target_groups(TargetGroupArns=arns)["TargetGroups"]
        return {int(group["Port"]) for group in found}

    def _groups_forwarded(self, load_balancer_arn: str | None) -> dict[str, int]:
        """The weights the listeners forward with when they name the groups' own target groups (setup keeps them:
        the deploys set them); {} otherwise (a new environment, or the earlier layout's shared tg-NAME)."""
        if not load_balancer_arn:
            return {}
        prefix = f":targetgroup/{self.names.group_target_group_prefix}"
        for listener in self.listeners(load_balancer_arn).values():
            weights = current_weights(listener["DefaultActions"])
            if any(prefix in arn for arn in weights):
                return weights
        return {}
