"""`inv status`: what an environment has, read-only: a table for people, or JSON for scripts.

`collect_status` reads the environment through the same helpers the steps use and returns a plain
dict whose shape is documented in docs/operations.md ("inv status --json") and versioned by its `version`
key; `render_table` turns that dict into text without touching AWS.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from deploy.aws.dns import a_record, find_hosted_zone, host_records
from deploy.aws.groups import (
    environment_groups,
    launch_configurations,
    launch_templates,
    scheduled_retirements,
    template_image,
    utc_text,
)
from deploy.aws.images import environment_images
from deploy.aws.leftovers import orphan_snapshots, packer_leftovers
from deploy.environment import Environment
from deploy.errors import DeployError
from deploy.naming import tag_value, tags_of
from deploy.plans.groups import kept_group, serving_group, window_end
from deploy.plans.model import DEPLOYED_TAG
from deploy.views.retirement import NextRun, retirement_fields, retirement_lines, retirement_text
from deploy.views.traffic import service_url

VERSION = 1
Status = dict[str, Any]  # the shape docs/operations.md documents
NOT_REGISTERED = "not registered"
# An emulator tags an instance with what runs on it; the embedded cloud says "none: ..." for a record only.
INSTANCE_APP_TAG = "LocalCloudApp"


def _iso(value: Any) -> str | None:
    """An AWS timestamp (datetime or ISO text) as ISO 8601 UTC text."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    return str(value)


def _age_seconds(created: str | None, now: datetime) -> int | None:
    if not created:
        return None
    try:
        when = datetime.fromisoformat(created.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(int((now - when).total_seconds()), 0)


def host_record(environment: Environment) -> dict[str, Any]:
    """The host name, its zone, and the A record at it (alias target or values), if any."""
    host = environment.names.host
    try:
        zone_id: str | None = find_hosted_zone(environment)
    except DeployError as error:
        return {"name": host, "zone_id": None, "record": None, "problem": str(error)}
    record = a_record(host_records(environment, zone_id)) if zone_id else None
    if record is None:
        return {"name": host, "zone_id": zone_id, "record": None}
    alias = record.get("AliasTarget") or {}
    return {
        "name": host,
        "zone_id": zone_id,
        "record": {
            "type": "A",
            "alias": alias.get("DNSName", "").rstrip(".") or None,
            "evaluate_target_health": alias.get("EvaluateTargetHealth") if alias else None,
            "values": [r["Value"] for r in record.get("ResourceRecords", [])],
        },
    }


def load_balancer_summary(environment: Environment) -> dict[str, Any]:
    """The load balancer's describe_summary() with `exists`; only kind, name and exists=false when absent."""
    balancer = environment.load_balancer
    summary = balancer.describe_summary()
    if not summary or summary.get("exists") is False:
        return {"kind": balancer.kind, "name": balancer.name, "exists": False}
    return {"exists": True, **summary, "url": service_url(environment, summary)}


def read_lock(environment: Environment) -> dict[str, Any] | None:
    """The deploy lock's holder, if the lock is held."""
    holder = environment.lock.read()
    return dataclasses.asdict(holder) if holder is not None else None


def _counts(values: list[str]) -> dict[str, int]:
    return dict(sorted(Counter(values).items()))


def instance_apps(environment: Environment, ids: list[str]) -> dict[str, str]:
    """What runs on each instance, where an emulator says so (tag LocalCloudApp); empty on AWS."""
    if not ids:
        return {}
    reservations = environment.aws.ec2.describe_instances(Filters=[{"Name": "instance-id", "Values": ids}])
    return {
        i["InstanceId"]: tag_value(i, INSTANCE_APP_TAG)
        for r in reservations["Reservations"]
        for i in r["Instances"]
        if tag_value(i, INSTANCE_APP_TAG)
    }


def group_status(
    raw: dict[str, Any],
    lb_states: dict[str, str],
    serving: str | None,
    now: datetime,
    apps: dict[str, str] | None = None,
    weight: int | None = None,
    scheduled: str | None = None,
) -> dict[str, Any]:
    """Pure: one group's entry of the status, from its description and the load balancer's instance states
    (APPS: what runs on each instance, where an emulator says so; WEIGHT: the share of requests the listeners send
    its target group, None where groups have no weights: the classic kind; SCHEDULED: when its scheduled retirement
    runs, as AWS holds it)."""
    apps = apps or {}
    tags = tags_of(raw)
    template = raw.get("LaunchTemplate") or {}
    instances = [
        {
            "id": i["InstanceId"],
            "lifecycle": i.get("LifecycleState"),
            "health": i.get("HealthStatus"),
            "load_balancer": lb_states.get(i["InstanceId"], NOT_REGISTERED),
            "app": apps.get(i["InstanceId"]),
        }
        for i in sorted(raw.get("Instances", []), key=lambda i: i["InstanceId"])
    ]
    created = _iso(raw.get("CreatedTime"))
    return {
        "name": raw["AutoScalingGroupName"],
        "serving": raw["AutoScalingGroupName"] == serving,
        "image": tags.get("Image"),
        "created": created,
        "age_seconds": _age_seconds(created, now),
        "promoted": tags.get("Promoted"),
        "status": raw.get("Status"),
        "min": raw.get("MinSize"),
        "desired": raw.get("DesiredCapacity"),
        "max": raw.get("MaxSize"),
        "launch_template": template.get("LaunchTemplateName"),
        "launch_configuration": raw.get("LaunchConfigurationName"),
        "lifecycle": _counts([str(i["lifecycle"]) for i in instances]),
        "health": _counts([str(i["health"]) for i in instances]),
        "load_balancer": _counts([i["load_balancer"] for i in instances]),
        "instances": instances,
        "weight": weight,
        **retirement_fields(tags, raw["AutoScalingGroupName"] == serving, scheduled, instances),
    }


def collect_status(environment: Environment, now: datetime | None = None, next_run: NextRun | None = None) -> Status:
    """Everything `inv status` shows, as a plain dict (shape: docs/operations.md, "inv status --json"). Reads only.
    NEXT_RUN: what the next run would size 0 or delete (deploy/steps/cleanup.py `next_run`: the cleanup's plan)."""
    now = now or datetime.now(UTC)
    config = environment.config
    names = environment.names
    balancer = load_balancer_summary(environment)
    lb_states: dict[str, str] = {}
    if balancer["exists"]:
        try:
            lb_states = environment.load_balancer.serving_states()
        except DeployError:
            lb_states = {}  # e.g. an ALB without its target group: the summary says what is missing
    groups = environment_groups(environment)
    serving = serving_group(groups)
    raws = [group.raw for group in groups]
    apps = instance_apps(environment, [i["InstanceId"] for raw in raws for i in raw.get("Instances", [])])
    try:
        weights = [environment.load_balancer.group_weight(raw) for raw in raws] if balancer["exists"] else []
    except DeployError:
        weights = []
    weights += [None] * (len(raws) - len(weights))
    serving_name = serving.name if serving else None
    # A group with a window (or one a run was killed before it scheduled): its scheduled retirement, if any.
    scheduled = scheduled_retirements(environment, [g.name for g in groups if window_end(g) and not g.scaled_in])
    group_entries = [
        group_status(raw, lb_states, serving_name, now, apps, weight, scheduled.get(raw["AutoScalingGroupName"]))
        for raw, weight in zip(raws, weights, strict=True)
    ]
    kept = kept_group(groups, serving_name, utc_text(now))
    in_use = {g["image"] for g in group_entries if g["image"]}
    templates = []
    for name in launch_templates(environment):
        image = template_image(environment, name)
        in_use |= {image} if image else set()
        templates.append({"name": name, "image": image})
    configurations = [
        {"name": c["LaunchConfigurationName"], "image": c.get("ImageId"), "created": _iso(c.get("CreatedTime"))}
        for c in launch_configurations(environment)
    ]
    in_use |= {c["image"] for c in configurations if c["image"]}
    images = [
        {
            "id": image["ImageId"],
            "name": image.get("Name"),
            "role": tag_value(image, "Role") or None,
            "state": image.get("State"),
            "created": image.get("CreationDate"),
            "age_seconds": _age_seconds(image.get("CreationDate"), now),
            "deployed": tag_value(image, DEPLOYED_TAG) or None,
            "in_use": image["ImageId"] in in_use,
        }
        for image in sorted(environment_images(environment), key=lambda i: i.get("CreationDate", ""), reverse=True)
    ]
    return {
        "version": VERSION,
        "env": environment.env,
        "stack": names.stack,
        "region": config.region,
        "endpoint": config.endpoint_url,
        "time": _iso(now),
        "host": host_record(environment),
        "load_balancer": balancer,
        "groups": group_entries,
        "launch_templates": templates,
        "launch_configurations": configurations,
        "images": images,
        "lock": read_lock(environment),
        # The window of the group the serving one replaced (`inv rollback` is a weight change until it ends).
        "window": {"group": kept.name, "ends": window_end(kept)} if kept else None,
        "next_run": next_run(environment) if next_run is not None and serving is not None else [],
        # What an interrupted bake or deregistration left (the next cleanup or destroy removes it).
        "leftovers": {
            "packer": [leftover.as_json() for leftover in packer_leftovers(environment)],
            "orphan_snapshots": [snapshot.as_json() for snapshot in orphan_snapshots(environment)],
        },
    }


# --- the table ----------------------------------------------------------------------------------


def human_age(seconds: int | None) -> str:
    """Pure: 45s, 12m, 3h05m, 2d04h."""
    if seconds is None:
        return "?"
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def _counts_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{state} {count}" for state, count in counts.items()) or "-"


def columns(rows: list[list[str]], indent: str = "  ") -> list[str]:
    """Pure: rows of cells as left-aligned columns (the first row is the header)."""
    if not rows:
        return []
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        indent + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    ]


def _health_check_text(check: dict[str, Any] | None) -> str:
    if not check:
        return "-"
    target = check.get("target") or f"{check.get('protocol')}:{check.get('port')}{check.get('path') or ''}"
    return (
        f"{target} every {check.get('interval')}s, timeout {check.get('timeout')}s,"
        f" healthy after {check.get('healthy_threshold')}, unhealthy after {check.get('unhealthy_threshold')}"
    )


def render_table(status: dict[str, Any]) -> str:
    """Pure: the status as text for people."""
    lines: list[str] = []
    where = f"{status['region']}" + (f", endpoint {status['endpoint']}" if status.get("endpoint") else "")
    lines.append(f"{status['stack']}  (env {status['env']}, {where}, at {status['time']})")

    host = status["host"]
    record = host.get("record")
    if record is None:
        why = f": {host['problem']}" if host.get("problem") else ""
        lines.append(f"host           {host['name']} → no A record{why}")
    elif record.get("alias"):
        lines.append(f"host           {host['name']} → ALIAS {record['alias']}")
    else:
        lines.append(f"host           {host['name']} → A {', '.join(record.get('values') or []) or '-'}")

    balancer = status["load_balancer"]
    if not balancer.get("exists"):
        lines.append(f"load balancer  {balancer['name']} ({balancer['kind']}): does not exist — run `inv setup`")
    else:
        lines.append(
            f"load balancer  {balancer['name']} ({balancer['kind']}) {balancer.get('dns_name') or ''}".rstrip()
        )
        lines.append(f"url            {balancer.get('url') or '-'}")
        lines.append(f"health check   {_health_check_text(balancer.get('health_check'))}")
        for listener in balancer.get("listeners") or []:
            if isinstance(listener, dict):
                listener = f"{listener.get('protocol')} {listener.get('port')} → {listener.get('action')}"
            lines.append(f"listener       {listener}")

    lines.append("")
    if status["groups"]:
        lines.append("groups")
        rows = [["NAME", "IMAGE", "AGE", "DESIRED", "LIFECYCLE", "LOAD BALANCER", "WEIGHT", ""]]
        for group in status["groups"]:
            mark = "serving" if group["serving"] else (group.get("status") or retirement_text(group))
            if group["instances"] and all(str(i.get("app") or "").startswith("none") for i in group["instances"]):
                mark = f"{mark} (records only: its image carries no app)".strip()
            rows.append(
                [
                    group["name"],
                    group["image"] or group.get("launch_configuration") or "-",
                    human_age(group["age_seconds"]),
                    f"{group['desired']} ({group['min']}-{group['max']})",
                    _counts_text(group["lifecycle"]),
                    _counts_text(group["load_balancer"]),
                    "-" if group.get("weight") is None else f"{group['weight']} %",
                    mark,
                ]
            )
        lines += columns(rows)
    else:
        lines.append("groups         none")

    lines += retirement_lines(status)

    if status["launch_templates"]:
        lines.append("launch templates")
        lines += columns([["NAME", "IMAGE"]] + [[t["name"], t["image"] or "-"] for t in status["launch_templates"]])
    if status["launch_configurations"]:
        lines.append("launch configurations")
        lines += columns(
            [["NAME", "IMAGE"]] + [[c["name"], c["image"] or "-"] for c in status["launch_configurations"]]
        )
    if status["images"]:
        lines.append("images")
        rows = [["ID", "ROLE", "AGE", "DEPLOYED", "IN USE", "NAME"]]
        for image in status["images"]:
            rows.append(
                [
                    image["id"],
                    image["role"] or "-",
                    human_age(image["age_seconds"]),
                    image["deployed"] or "-",
                    "yes" if image["in_use"] else "no",
                    image["name"] or "-",
                ]
            )
        lines += columns(rows)
    else:
        lines.append("images         none")

    leftovers = status.get("leftovers") or {}
    for item in leftovers.get("packer", []):
        names = [item["id"], item["key_pair"] or "", *(g["name"] for g in item["security_groups"])]
        lines.append(
            f"leftover       Packer's {' '.join(n for n in names if n)} ({item['state']}): `inv cleanup` removes it"
        )
    for item in leftovers.get("orphan_snapshots", []):
        lines.append(
            f"leftover       snapshot {item['id']} of the gone image {item['image']}: `inv cleanup` removes it"
        )

    lock = status["lock"]
    if lock is None:
        lines.append("deploy lock    free")
    elif "user" in lock:
        lines.append(
            f"deploy lock    held by {lock.get('user')}@{lock.get('host')} pid {lock.get('pid')},"
            f" since {lock.get('started')}, started at step {lock.get('step')}"
        )
    else:
        lines.append(f"deploy lock    held: {lock}")
    return "\n".join(lines) + "\n"


def show_status(environment: Environment, as_json: bool, out: Any, next_run: NextRun | None = None) -> dict[str, Any]:
    """`inv status`: collect, then print JSON or the table to OUT (progress lines go elsewhere)."""
    status = collect_status(environment, next_run=next_run)
    if as_json:
        out.write(json.dumps(status, indent=2, default=str) + "\n")
    else:
        out.write(render_table(status))
    out.flush()
    return status
