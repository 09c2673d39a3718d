"""A run's report.html kept up to date as its stages run: each stage's start, end, outcome and what it made, written
before the stage acts (it shows as running: a killed run's report says where it stopped) and again once it ended.
`inv report` finds a run's file."""

from __future__ import annotations

from contextlib import suppress
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from invoke.exceptions import Exit

from deploy.config import command_config, work_dir
from deploy.errors import DeployError
from deploy.invocation import current_invocation
from deploy.plans.traffic import Outcome
from deploy.views.report import REPORT_FILE, Stage, StepReport, Timeline, write_report

FINISH = "finish"  # the deploy's last stage: its success is the promotion
TRAFFIC = "shift-traffic"  # the stage whose steps the report shows, each as a bar and a row


@dataclass
class RunReport:
    """The stages of one run (one invocation's environment), in the order they ran."""

    env: str
    run: str  # the run's log folder name
    folder: Path
    action: str = "deploy"
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    stages: list[Stage] = field(default_factory=list)
    steps: list[StepReport] = field(default_factory=list)  # the traffic steps judged so far

    def timeline(self, outcome: str, ended: datetime | None, detail: str = "") -> Timeline:
        """The stages in the order they ran, each traffic step's bar right after the stage that ran it."""
        bars = [
            Stage(
                f"step {s.decision.number}: {s.decision.weight} %",
                s.start,
                s.end,
                "failed" if not s.decision.passed else "ok",
                s.decision.line(),
            )
            for s in self.steps
        ]
        stages: list[Stage] = []
        for stage in self.stages:
            stages.append(stage)
            if stage.name == TRAFFIC:
                stages += bars
        return Timeline(
            self.env, self.run, self.action, outcome, self.started, ended, tuple(stages), tuple(self.steps), detail
        )

    def step(self, step: StepReport) -> None:
        """A traffic step was judged: its bar and its row, shown at once (the stage still runs)."""
        self.steps.append(step)
        self._write("running", None)

    def begin(self, name: str, action: str) -> None:
        self.action = action
        self.stages.append(Stage(name, datetime.now(UTC), None, "running"))
        self._write("running", None)

    def end(self, detail: str = "", error: str = "") -> None:
        """The running stage ended: ok (DETAIL: what it made), or failed with ERROR."""
        now = datetime.now(UTC)
        last = self.stages[-1]
        self.stages[-1] = replace(last, end=now, outcome="failed" if error else "ok", detail=error or detail)
        if error:
            aborted = any(step.decision.outcome is Outcome.FAILED for step in self.steps)
            self._write("aborted" if aborted else "failed", now, f"{last.name}: {error}")
        else:
            self._write("promoted" if last.name == FINISH and self.action == "deploy" else "ok", now)

    def _write(self, outcome: str, ended: datetime | None, detail: str = "") -> None:
        # The report is a view: an unwritable log folder (the run log says so) never fails a run.
        with suppress(OSError):
            write_report(self.timeline(outcome, ended, detail), self.folder)


def current_report(env: str, folder: Path) -> RunReport:
    """This run's report (one per invocation and environment, as its log folder FOLDER)."""
    with current_invocation() as opened:
        return opened.open(("report", env), lambda: RunReport(env, folder.name, folder), lambda _: None)


def find_report(root: Path, env: str, run: str | None = None) -> Path:
    """ROOT/ENV/RUN/report.html: the newest run's with a report, or the run RUN (its folder name, or its start)."""
    folder = root / env
    runs = sorted(
        (path for path in folder.iterdir() if path.is_dir() and not path.is_symlink()) if folder.is_dir() else [],
        key=lambda path: path.name,
    )
    found = [path / REPORT_FILE for path in runs if (path / REPORT_FILE).is_file()]
    if run is not None:
        found = [path for path in found if path.parent.name.startswith(run)]
    if not found:
        which = f"run {run}" if run is not None else "any run"
        raise DeployError(
            f"No report.html of {which} of {env} under {folder}: a deploy writes one in its log folder"
            f" (`inv deploy --env {env}`)."
        )
    return found[-1]


def report_path(env: str | None, run: str | None = None) -> Path:
    """`inv report`: the path of ENV's report (the newest, or RUN's); a clear exit when there is none."""
    try:
        return find_report(work_dir() / "deploy" / "log", command_config(env).env, run)
    except DeployError as error:
        raise Exit(f"report: {error}", code=1) from None
