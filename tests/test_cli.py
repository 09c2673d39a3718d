"""The real command line, as a subprocess: task listing, help, and one-paragraph errors without tracebacks."""

from __future__ import annotations

import re

import pytest
from conftest import NO_CREDENTIALS, run_inv, use_env_folder, write_env_folder
from invoke import Collection


def task_names() -> list[str]:
    import tasks

    return sorted(Collection.from_module(tasks).task_names)


def test_every_task_is_listed_with_a_summary():
    result = run_inv("--list")
    assert result.returncode == 0, result.stderr
    names = task_names()
    assert {"setup", "deploy", "local-cloud", "cleanup", "wait-health"} <= set(names)
    for name in names:
        line = re.search(rf"^  {re.escape(name)} +(\S.*)$", result.stdout, re.MULTILINE)
        assert line, f"{name} is not listed with a summary:\n{result.stdout}"
        assert len(line.group(1)) > 10


def test_setup_help_documents_env():
    result = run_inv("--help", "setup")
    assert result.returncode == 0, result.stderr
    assert "--env=STRING" in result.stdout
    assert "DEPLOY_ENV" in result.stdout
    assert "NODE_ENV" in result.stdout
    assert "staging" in result.stdout


def test_every_task_documents_every_flag():
    import tasks

    collection = Collection.from_module(tasks)
    for name in collection.task_names:
        # get_arguments() moves each help text into its Argument (and out of task.help).
        arguments = {argument.name: argument for argument in collection[name].get_arguments()}
        assert "env" in arguments, name
        for flag, argument in arguments.items():
            assert argument.help, f"inv {name} --{flag} has no help"


def assert_one_paragraph_error(stderr: str) -> str:
    assert "Traceback" not in stderr
    text = stderr.strip()
    assert text.startswith("error: ")
    assert "\n\n" not in text
    return text


def test_an_unknown_environment_is_one_paragraph_without_traceback(tmp_path, aws_environ, monkeypatch):
    folder = write_env_folder(tmp_path / "env", {"alpha.env": "DOMAIN=example.com\n", "beta.env": "DOMAIN=a.io\n"})
    use_env_folder(monkeypatch, folder, tmp_path / "work")
    result = run_inv("setup", "--env", "nope")
    assert result.returncode != 0
    text = assert_one_paragraph_error(result.stderr)
    assert "Unknown environment 'nope'" in text
    assert "alpha, beta" in text
    assert not (tmp_path / "work" / "deploy").exists()  # nothing ran


def test_a_config_error_names_file_and_key_without_traceback(tmp_path, aws_environ, monkeypatch):
    folder = write_env_folder(tmp_path / "env", {"broken.env": "DOMAIN=example.com\nMAX_CAPACITY=lots\n"})
    use_env_folder(monkeypatch, folder, tmp_path / "work")
    result = run_inv("setup", "--env", "broken")
    assert result.returncode == 1
    text = assert_one_paragraph_error(result.stderr)
    assert "broken.env" in text
    assert "MAX_CAPACITY='lots'" in text


def test_the_default_environment_comes_from_deploy_env(tmp_path, aws_environ, monkeypatch):
    folder = write_env_folder(tmp_path / "env", {"alpha.env": "DOMAIN=example.com\n"})
    use_env_folder(monkeypatch, folder, tmp_path / "work")
    result = run_inv("setup", env={"DEPLOY_ENV": "gamma", "NODE_ENV": "alpha"})
    assert result.returncode == 1
    assert "Unknown environment 'gamma'" in result.stderr


def test_missing_credentials_say_so_and_suggest_the_local_cloud(tmp_path, aws_environ, monkeypatch):
    folder = write_env_folder(tmp_path / "env", {"real.env": "DOMAIN=example.com\nLOCAL_CLOUD=false\n"})
    use_env_folder(monkeypatch, folder, tmp_path / "work")
    result = run_inv("setup", "--env", "real", env=NO_CREDENTIALS, timeout=30)
    assert result.returncode == 1
    text = assert_one_paragraph_error(result.stderr)
    assert "credentials" in text.lower()
    assert "--env local" in text
    assert "==> setup" not in result.stdout  # the step never started


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("traffic", "--rate", "abc"), "error: --rate takes a number of requests a second, not 'abc'."),
        (("traffic", "--rate", "0"), "error: --rate takes more than 0 and at most 200 requests a second"),
        (("traffic", "--rate", "1000"), "error: --rate takes more than 0 and at most 200 requests a second"),
        (("traffic", "--seconds", "x"), "error: that flag takes a whole number of at least 1, not 'x'."),
        (("history", "--limit", "0"), "error: that flag takes a whole number of at least 1, not 0."),
    ],
)
def test_a_bad_number_flag_is_one_line_before_any_task_runs(args, message):
    result = run_inv(*args, "--env", "local")
    assert result.returncode != 0
    assert message in result.stderr + result.stdout
    assert "Traceback" not in result.stderr + result.stdout
    assert "==>" not in result.stdout  # refused while parsing: no step started
