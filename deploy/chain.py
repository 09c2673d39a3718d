"""Pre-task chains that run make-style, from the pipeline's one definition (deploy/pipeline.py).

A stage's task pulls in the stages it needs (`Stage.needs`) as pre-tasks. This executor hands each pre-task the
flags of the task that pulled it in (only those it declares), so `inv deploy --env dev01 --image-id ami-x` builds
nothing for the wrong environment; and a stage whose output is already given does not pull in its own
prerequisites (`--image-id` skips the app build and both bakes).
"""

from __future__ import annotations

import inspect
import signal
from typing import Any

from invoke.executor import Executor
from invoke.tasks import Call, Task

from deploy import pipeline
from deploy.config import command_config
from deploy.errors import DeployError
from deploy.invocation import invocation
from deploy.plans.hand import given_image


def _parameters(task: Task[Any]) -> set[str]:
    return set(inspect.signature(task.body).parameters) - {"c", "ctx", "context"}


def inherit(call: Call, flags: dict[str, Any]) -> Call:
    """CALL with the caller's flags that it declares, its own explicit kwargs taking precedence."""
    accepted = _parameters(call.task)
    kwargs = {key: value for key, value in flags.items() if key in accepted}
    kwargs.update(call.kwargs)
    return Call(call.task, args=call.args, kwargs=kwargs, called_as=call.called_as)


def image_given(call: Call) -> bool:
    """Whether an image is given by hand (--image-id, else IMAGE_ID): nothing needs building or baking then."""
    flags = call.kwargs
    if flags.get("image_id"):
        return True
    try:
        return given_image(None, command_config(flags.get("env")).image_id) is not None
    except DeployError:
        return False  # the task itself reports the configuration error


def prerequisites(call: Call) -> list[str]:
    """The tasks CALL pulls in first: the stages its stage needs (none when a given image makes them needless).
    A dry run (--dry-run) pulls in none: the task prints the plan of every stage instead."""
    if call.kwargs.get("dry_run"):
        return []
    stage = pipeline.stage_of_task(call.task.name)
    if stage is None:
        return []
    return pipeline.prerequisites(call.task.name, image_given(call) if stage.makes_image else False)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # SIGTERM unwinds like Ctrl-C: the same clean-up paths run


def command_name(tasks: tuple[Any, ...]) -> str:
    """The tasks a command line names, as the deploy lock shows them: "deploy", "setup and status"."""
    names = [str(getattr(task, "name", task[0] if isinstance(task, tuple) else task)) for task in tasks]
    return " and ".join(name.replace("_", "-") for name in names)


class ChainExecutor(Executor):
    def execute(self, *tasks: Any) -> dict[Task[Any], Any]:
        """Run the tasks as one invocation: whatever happens, the deploy locks its tasks took are released."""
        previous = signal.signal(signal.SIGTERM, _interrupt)
        try:
            with invocation(command_name(tasks)):
                return super().execute(*tasks)
        finally:
            signal.signal(signal.SIGTERM, previous)

    def dedupe(self, calls: list[Call]) -> list[Call]:
        """Each stage runs once per environment on a command line, however many stages need it (finish and
        shift-traffic both need wait-health; their flags differ, so invoke's own dedupe would keep both): the first
        call, which carries the flags of the task that pulled it in first."""
        seen: set[tuple[str, Any]] = set()
        kept: list[Call] = []
        for call in super().dedupe(calls):
            if pipeline.stage_of_task(call.task.name) is not None:
                key = (call.task.name, call.kwargs.get("env"))
                if key in seen:
                    continue
                seen.add(key)
            kept.append(call)
        return kept

    def expand_calls(self, calls: list[Any], flags: dict[str, Any] | None = None) -> list[Call]:
        expanded: list[Call] = []
        for call in calls:
            if isinstance(call, Task):
                call = Call(call)
            if flags is not None:
                call = inherit(call, flags)
            needed = [self.collection[name] for name in prerequisites(call)]
            if needed:
                expanded.extend(self.expand_calls(needed, call.kwargs))
            expanded.append(call)
            if call.post:
                expanded.extend(self.expand_calls(call.post, call.kwargs))
        return expanded
