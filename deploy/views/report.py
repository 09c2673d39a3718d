"""`report.html`: one deploy as a page to look at, written into its log folder.

One self-contained file: inline CSS, no script, no image, no font, no link to anything (its Content-Security-Policy
forbids every fetch), so it opens the same from a laptop, a CI artifact or an air-gapped machine. It shows:

- a timeline of the stages (bakes, launch, health, each traffic step with its weight, retirement): a bar per
  stage, placed and sized by its start and end within the run;
- per traffic step: the weight sent to the new group, the requests, 5xx answers and p99 response time of the
  serving (old) and the new group over the step, and the decision with its reasons.

Everything shown is data: every text is escaped, control characters are dropped.
"""

from __future__ import annotations

import html
import os
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from deploy.plans.traffic import Figures, StepDecision

REPORT_FILE = "report.html"
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")

STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:2rem;color:#1b1f24;background:#fff}
h1{font-size:1.4rem;margin:0 0 .3rem} h2{font-size:1.1rem;margin:1.6rem 0 .5rem}
.summary{color:#57606a;margin:0}
.outcome{font-weight:600;padding:.1rem .5rem;border-radius:.3rem}
.ok,.promoted{background:#dafbe1;color:#116329} .failed,.aborted{background:#ffebe9;color:#a40e26}
.too_few,.warning{background:#fff8c5;color:#7d4e00} .running{background:#ddf4ff;color:#0a3069}
table{border-collapse:collapse;margin:.3rem 0} th,td{border:1px solid #d0d7de;padding:.25rem .6rem;text-align:left}
th{background:#f6f8fa} td.number{text-align:right;font-variant-numeric:tabular-nums}
.timeline{position:relative;border:1px solid #d0d7de;background:#f6f8fa;margin:.4rem 0}
.lane{position:relative;height:1.6rem;border-bottom:1px solid #eaeef2}
.lane:last-child{border-bottom:0}
.bar{position:absolute;top:.25rem;height:1.1rem;border-radius:.2rem;background:#54aeff;min-width:2px}
.bar.failed{background:#ff8182} .bar.step{background:#4ac26b}
.label{position:absolute;left:.4rem;top:.2rem;white-space:nowrap;font-size:.8rem;color:#1b1f24}
"""


@dataclass(frozen=True)
class Stage:
    """One stage of a run: a bake, the launch, the health wait, a traffic step, a retirement."""

    name: str
    start: datetime
    end: datetime | None  # None: still running when the report was written (a killed run)
    outcome: str = "ok"  # ok, failed, skipped, running
    detail: str = ""


@dataclass(frozen=True)
class StepReport:
    """One traffic step: its window, the decision (weight, the new group's figures) and the old group's figures."""

    start: datetime
    end: datetime
    decision: StepDecision
    previous: Figures  # the serving group's figures over the same window
    previous_group: str


@dataclass(frozen=True)
class Timeline:
    """What report.html shows of one run."""

    env: str
    run: str  # the run's log folder name
    action: str  # deploy, rollback
    outcome: str  # promoted, aborted, running
    started: datetime
    ended: datetime | None
    stages: tuple[Stage, ...] = ()
    steps: tuple[StepReport, ...] = ()
    detail: str = ""


def _text(value: object) -> str:
    return html.escape(CONTROL.sub("", str(value)), quote=True)


def _seconds(start: datetime, end: datetime | None) -> str:
    return "running" if end is None else f"{(end - start).total_seconds():,.1f} s"


def _bars(timeline: Timeline) -> str:
    """A lane per stage, its bar placed at its start and as wide as it lasted (percent of the whole run)."""
    ends = [s.end for s in timeline.stages if s.end] + [timeline.ended or timeline.started]
    finish = max(ends)
    total = max((finish - timeline.started).total_seconds(), 1e-9)
    lanes = []
    for stage in timeline.stages:
        left = max((stage.start - timeline.started).total_seconds(), 0.0) / total * 100
        width = max(((stage.end or finish) - stage.start).total_seconds(), 0.0) / total * 100
        kind = "step" if stage.name.startswith("step ") else ""
        classes = " ".join(c for c in ("bar", kind, _text(stage.outcome)) if c)
        lanes.append(
            f'<div class="lane" data-stage="{_text(stage.name)}">'
            f'<div class="{classes}" style="left:{left:.2f}%;width:{min(width, 100 - left):.2f}%"></div>'
            f'<span class="label">{_text(stage.name)} · {_seconds(stage.start, stage.end)}</span></div>'
        )
    return f'<div class="timeline">{"".join(lanes)}</div>'


def _stage_rows(timeline: Timeline) -> str:
    rows = []
    for stage in timeline.stages:
        rows.append(
            f'<tr data-stage="{_text(stage.name)}"><td>{_text(stage.name)}</td>'
            f"<td>{_text(stage.start.strftime('%H:%M:%S'))}</td>"
            f'<td class="number">{_seconds(stage.start, stage.end)}</td>'
            f'<td><span class="outcome {_text(stage.outcome)}">{_text(stage.outcome)}</span></td>'
            f"<td>{_text(stage.detail)}</td></tr>"
        )
    head = "<tr><th>stage</th><th>start (UTC)</th><th>duration</th><th>outcome</th><th>detail</th></tr>"
    return f'<table class="stages">{head}{"".join(rows)}</table>'


def _figures_cells(figures: Figures) -> str:
    p99 = "–" if figures.p99_ms is None else f"{figures.p99_ms:,.0f} ms"
    return (
        f'<td class="number">{figures.requests:,}</td>'
        f'<td class="number">{figures.errors:,} ({figures.error_rate:.1f} %)</td>'
        f'<td class="number">{p99}</td>'
    )


def _step_rows(timeline: Timeline) -> str:
    if not timeline.steps:
        return "<p>No traffic steps: the new group took all requests once healthy (TRAFFIC_STEPS=100).</p>"
    rows = []
    for step in timeline.steps:
        decision = step.decision
        reasons = "; ".join(decision.reasons)
        rows.append(
            f'<tr class="step" data-step="{decision.number}">'
            f'<td class="number">{decision.number}/{decision.steps}</td>'
            f'<td class="number weight">{decision.weight} %</td>'
            f"<td>{_text(step.start.strftime('%H:%M:%S'))} – {_text(step.end.strftime('%H:%M:%S'))}</td>"
            f"{_figures_cells(step.previous)}{_figures_cells(decision.figures)}"
            f'<td class="decision"><span class="outcome {decision.outcome.name.lower()}">'
            f"{_text(decision.outcome.value)}</span>{' ' + _text(reasons) if reasons else ''}</td></tr>"
        )
    old = _text(timeline.steps[0].previous_group)
    new = _text(timeline.steps[0].decision.group)
    head = (
        f'<tr><th rowspan="2">step</th><th rowspan="2">weight to new</th><th rowspan="2">window (UTC)</th>'
        f'<th colspan="3">old: {old}</th><th colspan="3">new: {new}</th><th rowspan="2">decision</th></tr>'
        "<tr><th>requests</th><th>5xx</th><th>p99</th><th>requests</th><th>5xx</th><th>p99</th></tr>"
    )
    return f'<table class="steps">{head}{"".join(rows)}</table>'


def render_report(timeline: Timeline) -> str:
    """The page (a complete HTML document, nothing fetched)."""
    title = f"{timeline.action} of {timeline.env} · {timeline.run}"
    lasted = _seconds(timeline.started, timeline.ended)
    detail = f" · {_text(timeline.detail)}" if timeline.detail else ""
    return (
        "<!doctype html>\n<html lang=en><head><meta charset=utf-8>"
        "<meta http-equiv=Content-Security-Policy content=\"default-src 'none'; style-src 'unsafe-inline'\">"
        f"<title>{_text(title)}</title><style>{STYLE}</style></head><body>"
        f"<h1>{_text(title)}</h1>"
        f'<p class="summary"><span class="outcome {_text(timeline.outcome)}" id="outcome">{_text(timeline.outcome)}'
        f"</span> · started {_text(timeline.started.strftime('%Y-%m-%d %H:%M:%S'))} UTC · {lasted}{detail}</p>"
        f"<h2>Timeline</h2>{_bars(timeline)}{_stage_rows(timeline)}"
        f"<h2>Traffic steps</h2>{_step_rows(timeline)}"
        "</body></html>\n"
    )


def write_report(timeline: Timeline, folder: Path) -> Path:
    """Write FOLDER/report.html (whole or not at all: a reader never sees half a page)."""
    path = folder / REPORT_FILE
    partial = folder / f".{REPORT_FILE}.{os.getpid()}"
    partial.write_text(render_report(timeline), encoding="utf-8")
    partial.replace(path)
    return path
