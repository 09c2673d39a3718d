"""report.html (deploy/views/report.py), rendered in a real browser: headless Chromium loads the file, and the test
reads what it shows (the rendered text, the bars' layout, what the page fetched)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from headless import open_page

from deploy.plans.traffic import Figures, Thresholds, judge_step
from deploy.views.report import Stage, StepReport, Timeline, render_report, write_report

T0 = datetime(2026, 12, 5, 10, 0, 0, tzinfo=UTC)
OLD, NEW = "asg-webapp-local-20261205095000", "asg-webapp-local-20261205100000"
LIMITS = Thresholds(max_error_rate=1.0, max_latency_ms=500, min_requests=50)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def step(number: int, steps: int, weight: int, start: float, new: Figures, old: Figures) -> StepReport:
    decision = judge_step(number, steps, weight, NEW, new, {}, LIMITS)
    return StepReport(start=at(start), end=at(start + 6), decision=decision, previous=old, previous_group=OLD)


def good_release() -> Timeline:
    """Run 1: TRAFFIC_STEPS=10,50,100, promoted."""
    steps = (
        step(1, 3, 10, 10, Figures(60, 0, 0.004), Figures(540, 0, 0.005)),
        step(2, 3, 50, 16, Figures(301, 0, 0.006), Figures(299, 0, 0.005)),
        step(3, 3, 100, 22, Figures(600, 1, 0.007), Figures(0, 0, None)),
    )
    stages = (
        Stage("bake-carnivore", at(0), at(3)),
        Stage("launch-asg", at(3), at(4)),
        Stage("wait-health", at(4), at(10)),
        *(Stage(f"step {s.decision.number}: {s.decision.weight} %", s.start, s.end, "ok") for s in steps),
        Stage("keep previous (weight 0)", at(28), at(30), "ok", "until 10:15:28"),
    )
    return Timeline("local", "20261205T100000", "deploy", "promoted", T0, at(30), stages, steps)


def bad_release() -> Timeline:
    """Run 2: half of the new group's requests fail; aborted in its first step."""
    failing = step(1, 3, 10, 10, Figures(62, 31, 0.004), Figures(538, 0, 0.005))
    stages = (
        Stage("launch-asg", at(0), at(1)),
        Stage("wait-health", at(1), at(10)),
        Stage("step 1: 10 %", failing.start, failing.end, "failed"),
        Stage("rollback <all to old>", at(16), at(17), "ok", "weights 100/0; new group removed"),
    )
    return Timeline(
        "local", "20261205T101000", "deploy", "aborted", T0, at(17), stages, (failing,), "5xx 50.0 % in step 1"
    )


def shown(report: Path) -> tuple[str, list[str], list[str]]:
    """What Chromium shows of REPORT: its text, the text of each step row, and what the page fetched."""
    with open_page(report.as_uri()) as page:
        text = page.evaluate("document.body.innerText")
        rows = page.evaluate("[...document.querySelectorAll('table.steps tr.step')].map(r => r.innerText)")
        return str(text), [str(r) for r in rows], page.requests


def test_a_promoted_release_shows_each_step_with_its_weight_and_decision(tmp_path: Path) -> None:
    report = write_report(good_release(), tmp_path)

    text, rows, fetched = shown(report)

    assert report.name == "report.html" and fetched == [report.as_uri()]  # nothing but the file itself
    assert "deploy of local · 20261205T100000" in text and "promoted" in text
    assert len(rows) == 3
    for row, weight in zip(rows, ("10 %", "50 %", "100 %"), strict=True):
        cells = row.split("\t")
        assert cells[1] == weight and cells[-1] == "ok", cells
    assert rows[0].split("\t")[3:9] == ["540", "0 (0.0 %)", "5 ms", "60", "0 (0.0 %)", "4 ms"]
    assert f"old: {OLD}" in text and f"new: {NEW}" in text
    for name in ("bake-carnivore", "wait-health", "step 2: 50 %", "keep previous (weight 0)"):
        assert name in text


def test_an_aborted_release_shows_the_failed_step_and_why(tmp_path: Path) -> None:
    report = write_report(bad_release(), tmp_path)

    text, [row], _ = shown(report)

    cells = row.split("\t")
    assert cells[1] == "10 %" and cells[6:9] == ["62", "31 (50.0 %)", "4 ms"]
    assert cells[-1] == "failed 5xx 50.0 % above MAX_ERROR_RATE 1 %"
    assert "aborted" in text and "5xx 50.0 % in step 1" in text
    assert "rollback <all to old>" in text  # data shown as text, never markup


def test_the_timeline_bars_are_placed_by_time(tmp_path: Path) -> None:
    report = write_report(good_release(), tmp_path)
    with open_page(report.as_uri()) as page:
        bars = page.evaluate(
            "[...document.querySelectorAll('.timeline .bar')].map(b => {"
            " const r = b.getBoundingClientRect(), t = b.parentElement.getBoundingClientRect();"
            " return [(r.left - t.left) / t.width, r.width / t.width]; })"
        )
    starts = [round(left, 2) for left, _ in bars]
    widths = [round(width, 2) for _, width in bars]
    assert starts == [0.0, 0.1, 0.13, 0.33, 0.53, 0.73, 0.93]  # start / 30 s
    assert widths == [0.1, 0.03, 0.2, 0.2, 0.2, 0.2, 0.07]  # duration / 30 s


def test_control_characters_and_markup_in_values_never_reach_the_page() -> None:
    hostile = Timeline("local", "x\x1b[31m", "deploy", "aborted", T0, at(1), (Stage("<b>bold</b>", T0, at(1)),))
    page = render_report(hostile)
    assert "\x1b" not in page and "<b>bold</b>" not in page and "&lt;b&gt;bold&lt;/b&gt;" in page
