"""The make-style pre-task chain: flags reach pre-tasks, and a given image prunes the build and bakes."""

from __future__ import annotations

from invoke import Collection, Config

import tasks
from deploy.chain import ChainExecutor


def _chain(task: str, **flags: object) -> list[tuple[str, dict]]:
    executor = ChainExecutor(Collection.from_module(tasks), Config())
    calls = executor.dedupe(executor.expand_calls(executor.normalize([(task, flags)])))
    return [(call.task.name, call.kwargs) for call in calls]


def test_deploy_runs_every_step_in_order_with_the_callers_environment() -> None:
    # The app builds first: a failing build must leave nothing behind, not even a primal image.
    chain = _chain("deploy", env="local", image_id=None, primal_id=None, timeout=0, keep_on_failure=False)
    assert [name for name, _ in chain] == [
        "build_app",
        "copy_over",
        "bake_primal",
        "bake_carnivore",
        "launch_asg",
        "wait_health",
        "shift_traffic",
        "deploy",
    ]
    assert all(kwargs.get("env") == "local" for _, kwargs in chain)


def test_pre_tasks_get_only_the_flags_they_declare() -> None:
    chain = dict(_chain("deploy", env="local", primal_id="ami-12345678", timeout=42, keep_on_failure=True))
    assert chain["bake_primal"] == {"env": "local", "primal_id": "ami-12345678"}
    assert chain["build_app"] == {"env": "local"}
    assert chain["wait_health"] == {"env": "local", "timeout": 42, "keep_on_failure": True}


def test_a_given_image_skips_the_build_and_both_bakes() -> None:
    chain = _chain("deploy", env="local", image_id="ami-0123456789abcdef0")
    assert [name for name, _ in chain] == ["bake_carnivore", "launch_asg", "wait_health", "shift_traffic", "deploy"]
    assert dict(chain)["launch_asg"]["image_id"] == "ami-0123456789abcdef0"


def test_a_single_step_pulls_in_only_its_prerequisites() -> None:
    assert [name for name, _ in _chain("copy-over", env="local")] == ["build_app", "copy_over"]
    assert [name for name, _ in _chain("wait-health", env="local")] == ["wait_health"]
    assert [name for name, _ in _chain("shift-traffic", env="local")] == ["shift_traffic"]


def test_the_configuration_is_loaded_once_per_command_line(monkeypatch) -> None:
    import deploy.config
    from deploy.invocation import invocation

    loads: list[str | None] = []
    real = deploy.config.load_config
    monkeypatch.setattr(deploy.config, "load_config", lambda env=None, *a, **k: loads.append(env) or real(env, *a, **k))
    with invocation("deploy"):
        _chain("deploy", env="local")  # the chain asks whether IMAGE_ID is given
        first = deploy.config.command_config("local")
        assert deploy.config.command_config("local") is first  # every task and step after it
    assert loads == ["local"]
    with invocation("deploy"):  # the next command line loads it again (the file may have changed)
        deploy.config.command_config("local")
    assert loads == ["local", "local"]


def test_the_deploy_chain_is_the_pipelines_stages_in_order() -> None:
    from deploy.pipeline import STAGES

    collection = Collection.from_module(tasks)
    assert all(collection[stage.task].name == stage.task for stage in STAGES)  # each stage runs alone as a task
    chain = [name for name, _ in _chain("deploy", env="local")]
    assert chain == [stage.task for stage in STAGES]  # the one definition orders the chain
