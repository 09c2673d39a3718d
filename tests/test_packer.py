"""Tests of the Packer runner, templates and provisioning scripts, including real builds on moto."""

from __future__ import annotations

import base64
import importlib.util
import json
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import AwsProxy, server_client, wait_until

from deploy.packer import (
    PackerError,
    PackerTransientError,
    parse_artifact_id,
    progress_message,
    run_packer,
    transient_cause,
    validate_template,
)
from deploy.packer_inputs import render_template, render_var_file
from deploy.packer_version import PLUGIN_INSTALL, check_packer, packer_refusal, parse_packer_version

ROOT = Path(__file__).resolve().parent.parent
PACKER_DIR = ROOT / "packer"
SCRIPTS = sorted((PACKER_DIR / "scripts").glob("*.sh"))
REGION = "us-east-1"
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
}
needs_packer = pytest.mark.skipif(
    shutil.which("packer") is None, reason="packer is not on PATH (apt-get install packer)"
)

# --- pure parsing -------------------------------------------------------------------------------

BUILD_OUTPUT = [
    "1795676256,,ui,say,==> local: Creating AMI 5Vx9oCe from instance i-5ab4e58207751bcdc\n",
    "1795676256,,ui,message,    local: AMI: ami-f228b4482ee40360b\n",
    "1795676256,,ui,say,==> local: No volumes to clean up%!(PACKER_COMMA) skipping\n",
    "1795676256,local,artifact-count,1\n",
    "1795676256,local,artifact,0,builder-id,mitchellh.amazonebs\n",
    "1795676256,local,artifact,0,id,us-east-1:ami-1fe91a55da7d71974\n",
    "1795676256,local,artifact,0,string,AMIs were created:\\nus-east-1: ami-1fe91a55da7d71974\\n\n",
    "1795676256,local,artifact,0,end\n",
]


def test_parse_artifact_id_reads_the_id_line() -> None:
    assert parse_artifact_id(BUILD_OUTPUT) == "ami-1fe91a55da7d71974"


def test_parse_artifact_id_takes_the_first_of_several_regions() -> None:
    line = "1,aws,artifact,0,id,eu-west-1:ami-0aaa%!(PACKER_COMMA)us-east-1:ami-0bbb"
    assert parse_artifact_id([line]) == "ami-0aaa"


def test_parse_artifact_id_without_artifact_is_none() -> None:
    assert parse_artifact_id(BUILD_OUTPUT[:5]) is None
    assert parse_artifact_id(["", "garbage", "1,,ui,error,Build 'local' errored"]) is None


def test_progress_message_decodes_say_and_message_lines() -> None:
    assert progress_message(BUILD_OUTPUT[0]) == "==> local: Creating AMI 5Vx9oCe from instance i-5ab4e58207751bcdc"
    assert progress_message(BUILD_OUTPUT[1]) == "    local: AMI: ami-f228b4482ee40360b"
    assert progress_message(BUILD_OUTPUT[2]) == "==> local: No volumes to clean up, skipping"
    assert progress_message("1,,ui,say,\\n==> Wait completed after 207 ms") == "==> Wait completed after 207 ms"
    assert progress_message("1,,ui,say,--> local: AMIs were created:\\nus-east-1: ami-1\\n") == (
        "--> local: AMIs were created:\nus-east-1: ami-1"
    )


def test_progress_message_ignores_other_lines() -> None:
    assert progress_message(BUILD_OUTPUT[5]) is None
    assert progress_message("1,,ui,error,Build 'local' errored") is None
    assert progress_message("1,,ui,say,") is None
    assert progress_message("not machine readable") is None


# --- variable files -----------------------------------------------------------------------------


def _context(**overrides: object) -> dict[str, object]:
    context: dict[str, object] = {
        "region": REGION,
        "endpoint": "http://127.0.0.1:5055",
        "source_ami": "ami-0123",
        "primal_ami": "ami-0456",
        "instance_type": "t3.micro",
        "image_name": "exapp-test-primal-20261126T101010-ab12cd",
        "app_name": "exapp",
        "env": "test",
        "app_dir": "/tmp/app",
        "health_check_path": "/api/status/health",
        "ssh_username": "admin",
        "primal_packages": "nginx nodejs",
        "primal_script": str(PACKER_DIR / "scripts" / "no-user-script.sh"),
        "start_command": "node server.js",
        "app_port": "8080",
        "carnivore_script": str(PACKER_DIR / "scripts" / "no-user-script.sh"),
        "vpc_id": "vpc-0abc1234",
        "subnet_id": "subnet-0abc1234",
        "security_group_id": "sg-0abc1234",
        "key_pair_name": "packer_test_20260101000000",
    }
    context.update(overrides)
    return context


@pytest.mark.parametrize("role", ["primal", "carnivore"])
def test_var_file_matches_template_variables(role: str, tmp_path: Path) -> None:
    # A var file naming a variable the template lacks, or missing a required one, breaks the build.
    dest = render_var_file(f"packer-{role}.vars.json.j2", _context(), tmp_path / f"{role}.json")
    rendered = json.loads(dest.read_text())
    declared = json.loads((PACKER_DIR / f"{role}.json").read_text())["variables"]
    assert set(rendered) == set(declared)
    assert all(isinstance(value, str) for value in rendered.values())


def test_var_file_escapes_values_and_accepts_paths(tmp_path: Path) -> None:
    tricky = 'a "quoted" name\\with `x` and </script>'
    context = _context(app_name=tricky, app_dir=tmp_path / "staged app", endpoint=None)
    dest = render_var_file("packer-carnivore.vars.json.j2", context, tmp_path / "sub" / "vars.json")
    rendered = json.loads(dest.read_text())
    assert rendered["app_name"] == tricky
    assert rendered["app_dir"] == str(tmp_path / "staged app")
    assert rendered["endpoint"] == ""


EVALUATED = "python3 server.py --tag {{env `AWS_SECRET_ACCESS_KEY`}} {{ 7*7 }}"


def test_start_command_reaches_packer_only_encoded(tmp_path: Path) -> None:
    # Packer evaluates `{{` in a variable's value: START_COMMAND goes base64-encoded, carnivore.sh decodes it.
    dest = render_var_file("packer-carnivore.vars.json.j2", _context(start_command=EVALUATED), tmp_path / "v.json")
    rendered = json.loads(dest.read_text())
    assert "{{" not in dest.read_text()
    assert base64.b64decode(rendered["start_command_b64"]).decode() == EVALUATED
    assert "base64 -d" in (PACKER_DIR / "scripts" / "carnivore.sh").read_text()


@pytest.mark.parametrize("name", ["app_dir", "carnivore_script", "endpoint"])
def test_any_other_value_packer_would_evaluate_is_refused_naming_it(tmp_path: Path, name: str) -> None:
    with pytest.raises(PackerError, match=f"Packer variable {name} .*holds '{{{{'"):
        render_var_file("packer-carnivore.vars.json.j2", _context(**{name: "/tmp/{{ 7*7 }}"}), tmp_path / "v.json")
    assert not (tmp_path / "v.json").exists()


@pytest.mark.parametrize("role", ["primal", "carnivore"])
def test_rendered_template_asks_for_a_public_ip_only_when_needed(role: str, tmp_path: Path) -> None:
    def aws_builder(public_ip: bool) -> dict[str, Any]:
        path = render_template(PACKER_DIR / f"{role}.json", tmp_path / f"{public_ip}.json", public_ip)
        return next(b for b in json.loads(path.read_text())["builders"] if b["name"] == "aws")

    # Unset unless the subnet gives none: the current amazon plugin reads an explicit false as "no public IP".
    assert "associate_public_ip_address" not in aws_builder(False) and "ssh_interface" not in aws_builder(False)
    public = aws_builder(True)
    assert (public["associate_public_ip_address"], public["ssh_interface"]) == (True, "public_ip")
    source = json.loads((PACKER_DIR / f"{role}.json").read_text())
    assert "associate_public_ip" not in json.dumps(source)
    # Packer's own requests are retried on throttling and 5xx answers, by every builder.
    assert all(builder["max_retries"] >= 6 for builder in source["builders"])


@needs_packer
@pytest.mark.parametrize("public_ip", [True, False])
def test_rendered_templates_validate(public_ip: bool, tmp_path: Path) -> None:
    for role in ("primal", "carnivore"):
        validate_template(render_template(PACKER_DIR / f"{role}.json", tmp_path / f"{role}.json", public_ip))


def test_var_file_names_a_missing_value(tmp_path: Path) -> None:
    context = _context()
    del context["source_ami"]
    with pytest.raises(PackerError, match="source_ami"):
        render_var_file("packer-primal.vars.json.j2", context, tmp_path / "vars.json")
    assert not (tmp_path / "vars.json").exists()


def test_var_file_refuses_non_strings(tmp_path: Path) -> None:
    with pytest.raises(PackerError, match="image_name must be a string"):
        render_var_file("packer-primal.vars.json.j2", _context(image_name=None), tmp_path / "vars.json")


# --- scripts and templates ----------------------------------------------------------------------


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.name)
def test_provisioning_script_passes_shellcheck(script: Path) -> None:
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    result = subprocess.run(["shellcheck", "-x", str(script)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr


def test_both_provisioning_scripts_exist() -> None:
    assert [path.name for path in SCRIPTS] == ["carnivore.sh", "no-user-script.sh", "primal.sh"]


def test_nothing_names_the_example_apps_server_any_more() -> None:
    # Any app, one contract: the unit runs START_COMMAND; only the default START_COMMAND names server.py.
    for path in [*SCRIPTS, *PACKER_DIR.glob("*.json")]:
        text = path.read_text(encoding="utf-8")
        assert "server.py" not in text, path
    carnivore = (PACKER_DIR / "scripts" / "carnivore.sh").read_text(encoding="utf-8")
    assert "Environment=PORT=$APP_PORT" in carnivore and "ExecStart=$START" in carnivore


@needs_packer
@pytest.mark.parametrize("template", ["primal.json", "carnivore.json"])
def test_template_validates(template: str) -> None:
    validate_template(PACKER_DIR / template)


@needs_packer
def test_validate_reports_an_unknown_option(tmp_path: Path) -> None:
    template = json.loads((PACKER_DIR / "primal.json").read_text())
    template["builders"][1]["no_such_option"] = True
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(template))
    with pytest.raises(PackerError, match="no_such_option"):
        validate_template(path)


# --- running packer -----------------------------------------------------------------------------


def test_missing_packer_says_how_to_install(tmp_path: Path) -> None:
    var_file = render_var_file("packer-primal.vars.json.j2", _context(), tmp_path / "vars.json")
    with pytest.raises(PackerError, match="apt-get install packer"):
        run_packer(PACKER_DIR / "primal.json", var_file, "local", tmp_path / "build.log", packer_bin="no-such-packer")
    with pytest.raises(PackerError, match="apt-get install packer"):
        validate_template(PACKER_DIR / "primal.json", packer_bin="no-such-packer")


def _stand_in(tmp_path: Path, version: str, plugins: str = "", build: str = "") -> Path:
    """A `packer` of VERSION as current Packer answers: `plugins installed` lists PLUGINS (none: empty output);
    `build` prints BUILD and fails."""
    fake = tmp_path / f"bin-{version}-{len(plugins)}" / "packer"  # one a stand-in: a run reads each packer once
    fake.parent.mkdir()
    fake.write_text(
        "#!/bin/sh\n"
        f'case "$1" in\n  version) echo "Packer v{version}";;\n  plugins) printf "%s" "{plugins}";;\n'
        f'  *) echo "{build}" >&2; exit 1;;\nesac\n'
    )
    fake.chmod(0o755)
    return fake


def test_packer_versions_decided() -> None:
    assert parse_packer_version("Packer v1.6.6\n") == (1, 6, 6)
    assert parse_packer_version("Packer v1.11.2\n\nYour version of Packer is out of date!") == (1, 11, 2)
    assert parse_packer_version("garbage") is None
    assert packer_refusal("packer", (1, 6, 6), None) is None
    assert packer_refusal("packer", (1, 9, 4), None) is None
    plugin = "/root/.config/packer/plugins/github.com/hashicorp/amazon/packer-plugin-amazon_v1.3.3_x5.0_linux_amd64"
    assert packer_refusal("packer", (1, 11, 2), plugin) is None
    for version, plugins in (((1, 11, 2), ""), ((1, 5, 0), None), ((2, 0, 0), plugin), (None, None)):
        refusal = packer_refusal("packer", version, plugins)
        assert refusal is not None and f"`{PLUGIN_INSTALL}`" in refusal, (version, refusal)


@needs_packer
def test_debians_packer_is_accepted() -> None:
    check_packer("packer")


def test_current_packer_without_the_amazon_plugin_is_refused_with_the_install_command(tmp_path: Path) -> None:
    fake = _stand_in(tmp_path, "1.11.2", build='Error: Failed to initialize build "aws"')
    with pytest.raises(PackerError) as refused:
        check_packer(str(fake))
    assert "Packer 1.11.2, which has no amazon plugin" in str(refused.value)
    assert "`packer plugins install github.com/hashicorp/amazon`" in str(refused.value)
    plugin = "/root/.config/packer/plugins/github.com/hashicorp/amazon/packer-plugin-amazon_v1.3.3_x5.0_linux_amd64"
    check_packer(str(_stand_in(tmp_path, "1.11.2", plugins=plugin)))  # with the plugin: accepted
    with pytest.raises(PackerError, match=r"is Packer 1\.5\.0; this tool supports Packer 1\.6\.6"):
        check_packer(str(_stand_in(tmp_path, "1.5.0")))


def test_throttling_and_5xx_answers_are_told_from_other_failures() -> None:
    throttled = "1,,ui,error,Build 'local' errored: Error querying AMI: RequestLimitExceeded: Request limit exceeded."
    assert transient_cause([throttled]) == "RequestLimitExceeded"
    assert transient_cause(["x: InternalError: We encountered an internal error"]) == "InternalError"
    assert transient_cause(["status code: 503, request id: 1"]) == "status code: 503"
    assert transient_cause(["UnauthorizedOperation: not allowed", "InvalidAMIID.NotFound"]) is None


def test_a_throttled_build_fails_as_transient(tmp_path: Path) -> None:
    fake = tmp_path / "fake-packer"
    fake.write_text('#!/bin/sh\necho "1,,ui,error,Error querying AMI: RequestLimitExceeded: slow down"\nexit 1\n')
    fake.chmod(0o755)
    (tmp_path / "vars.json").write_text("{}")
    with pytest.raises(PackerTransientError) as failed:
        run_packer(PACKER_DIR / "primal.json", tmp_path / "vars.json", "local", tmp_path / "b", packer_bin=str(fake))
    assert failed.value.cause == "RequestLimitExceeded"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@needs_packer
def test_failing_build_reports_the_log_tail(tmp_path: Path) -> None:
    # Nothing listens on a port just released: packer fails at once.
    endpoint = f"http://127.0.0.1:{_free_port()}"
    var_file = render_var_file("packer-primal.vars.json.j2", _context(endpoint=endpoint), tmp_path / "vars.json")
    log_path = tmp_path / "log" / "build.log"
    progress: list[str] = []
    with pytest.raises(PackerError) as failure:
        run_packer(PACKER_DIR / "primal.json", var_file, "local", log_path, on_progress=progress.append, env=AWS_ENV)
    message = str(failure.value)
    assert "failed (exit code 1)" in message
    assert str(log_path) in message
    assert "Last lines" in message and "errored" in message
    assert ",ui," not in message and "%!(PACKER_COMMA)" not in message  # decoded for people
    assert ",ui," in log_path.read_text()  # the log keeps the raw output


def _fake_packer(tmp_path: Path) -> Path:
    """A stand-in for packer that runs until interrupted, then reports cleaning up as packer does."""
    fake = tmp_path / "fake-packer"
    fake.write_text(
        "#!/bin/bash\n"
        # The trap comes first: the interrupt may arrive as soon as the first line is read.
        "trap \"echo '1,,ui,say,==> local: Terminating the source AWS instance...'; exit 1\" INT\n"
        "echo '1,,ui,say,==> local: Launching a source AWS instance...'\n"
        "while :; do sleep 0.05; done\n"
    )
    fake.chmod(0o755)
    (tmp_path / "vars.json").write_text("{}")
    return fake


def test_timeout_interrupts_packer_and_keeps_its_cleanup_output(tmp_path: Path) -> None:
    fake = _fake_packer(tmp_path)
    var_file = tmp_path / "vars.json"
    log_path = tmp_path / "build.log"
    progress: list[str] = []
    started = time.monotonic()
    with pytest.raises(PackerError, match=r"did not finish within 0\.3s"):
        run_packer(
            PACKER_DIR / "primal.json",
            var_file,
            "local",
            log_path,
            on_progress=progress.append,
            timeout_s=0.3,
            packer_bin=str(fake),
            cleanup_grace_s=5,
        )
    assert time.monotonic() - started < 4
    # Output after the interrupt still streams: the user sees packer clean up.
    assert progress == [
        "==> local: Launching a source AWS instance...",
        "==> local: Terminating the source AWS instance...",
    ]
    assert "Terminating the source AWS instance" in log_path.read_text()


def test_interrupt_lets_packer_clean_up_then_propagates(tmp_path: Path) -> None:
    # A Ctrl-C while output streams, simulated by the progress callback.
    def interrupt(line: str) -> None:
        raise KeyboardInterrupt

    fake = _fake_packer(tmp_path)
    log_path = tmp_path / "build.log"
    with pytest.raises(KeyboardInterrupt):
        run_packer(
            PACKER_DIR / "primal.json", tmp_path / "vars.json", "local", log_path, interrupt, packer_bin=str(fake)
        )
    assert "Terminating the source AWS instance" in log_path.read_text()


# --- real builds on moto ------------------------------------------------------------------------


@pytest.fixture
def moto_endpoint(fresh_cloud: str) -> str:
    """The session's moto server (deploy.motoserver: images are EBS-backed as on AWS), emptied."""
    return fresh_cloud


def _source_image(ec2: Any) -> str:
    """An image of our own, made as on AWS: launch an instance from a public image and image it."""
    public = ec2.describe_images(
        Owners=["amazon"],
        Filters=[{"Name": "root-device-type", "Values": ["ebs"]}, {"Name": "name", "Values": ["ubuntu/images/*"]}],
    )["Images"]
    instance = ec2.run_instances(ImageId=public[0]["ImageId"], MinCount=1, MaxCount=1, InstanceType="t3.micro")
    instance_id = instance["Instances"][0]["InstanceId"]
    image_id = ec2.create_image(InstanceId=instance_id, Name=f"source-{uuid.uuid4().hex[:8]}")["ImageId"]
    ec2.terminate_instances(InstanceIds=[instance_id])
    return image_id


def _load_example_app_build() -> Callable[[str, Path], Path]:
    spec = importlib.util.spec_from_file_location("example_app_build", ROOT / "example-app" / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build


def _tags(image: dict[str, Any]) -> dict[str, str]:
    return {tag["Key"]: tag["Value"] for tag in image.get("Tags", [])}


@needs_packer
@pytest.mark.timeout(60)
def test_primal_then_carnivore_build_on_moto(moto_endpoint: str, tmp_path: Path) -> None:
    ec2 = server_client(moto_endpoint, "ec2")
    source = _source_image(ec2)
    suffix = uuid.uuid4().hex[:6]
    common = {"region": REGION, "endpoint": moto_endpoint, "instance_type": "t3.micro", "app_name": "exapp"}
    common |= {"env": "test", "health_check_path": "/api/status/health", "ssh_username": "admin"}
    script = str(PACKER_DIR / "scripts" / "no-user-script.sh")
    common |= {"primal_packages": "", "primal_script": script, "carnivore_script": script}
    common |= {"start_command": "python3 server.py", "app_port": "80"}
    common |= {"vpc_id": "", "subnet_id": ""}
    common |= {"security_group_id": "", "key_pair_name": f"packer_exapp-test_{suffix}"}

    primal_name = f"exapp-test-primal-{suffix}"
    primal_vars = render_var_file(
        "packer-primal.vars.json.j2",
        {**common, "source_ami": source, "image_name": primal_name},
        tmp_path / "primal.vars.json",
    )
    progress: list[str] = []
    primal = run_packer(
        PACKER_DIR / "primal.json",
        primal_vars,
        "local",
        tmp_path / "primal.log",
        on_progress=progress.append,
        timeout_s=60,
        env=AWS_ENV,
    )
    [image] = ec2.describe_images(ImageIds=[primal])["Images"]
    assert image["Name"] == primal_name
    assert image["RootDeviceType"] == "ebs"
    assert _tags(image) == {
        "Name": primal_name,
        "ManagedBy": "immutable-deploy",
        "App": "exapp",
        "Env": "test",
        "Role": "primal",
        "SourceImage": source,
    }
    assert any("Creating AMI" in line for line in progress)
    assert f"artifact,0,id,{REGION}:{primal}" in (tmp_path / "primal.log").read_text()

    app_dir = _load_example_app_build()("test", tmp_path / "staged-app")
    assert (app_dir / "server.py").is_file() and (app_dir / "version.json").is_file()
    carnivore_name = f"exapp-test-carnivore-{suffix}"
    carnivore_vars = render_var_file(
        "packer-carnivore.vars.json.j2",
        {**common, "primal_ami": primal, "image_name": carnivore_name, "app_dir": app_dir},
        tmp_path / "carnivore.vars.json",
    )
    carnivore = run_packer(
        PACKER_DIR / "carnivore.json",
        carnivore_vars,
        "local",
        tmp_path / "carnivore.log",
        on_progress=lambda line: None,
        timeout_s=60,
        env=AWS_ENV,
    )
    [image] = ec2.describe_images(ImageIds=[carnivore])["Images"]
    assert image["Name"] == carnivore_name
    assert _tags(image)["Role"] == "carnivore"
    assert _tags(image)["SourceImage"] == primal
    assert {_tags(image)[key] for key in ("ManagedBy", "App", "Env")} == {"immutable-deploy", "exapp", "test"}
    # The app it carries is tagged by the tool, not by Packer (which would evaluate a `{{` in START_COMMAND).
    assert not {key for key in _tags(image) if key.startswith("LocalApp")}
    # Packer cleaned up after itself: no running build instance, no temporary key pair or group.
    running = ec2.describe_instances(Filters=[{"Name": "instance-state-name", "Values": ["pending", "running"]}])
    assert running["Reservations"] == []
    assert not [pair for pair in ec2.describe_key_pairs()["KeyPairs"] if pair["KeyName"].startswith("packer_")]
    groups = ec2.describe_security_groups()["SecurityGroups"]
    assert not [group for group in groups if group["GroupName"].startswith("packer_")]


def _alive(pid: int) -> bool:
    """Whether PID runs (a zombie no parent has reaped yet counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_packer_dies_with_the_tool_even_on_kill_9(tmp_path: Path) -> None:
    """kill -9 of the tool leaves no Packer running: the kernel interrupts it (PR_SET_PDEATHSIG)."""
    fake = tmp_path / "fake-packer"
    fake.write_text(f"#!/bin/sh\necho $$ > {tmp_path / 'packer.pid'}\nexec sleep 60\n")
    fake.chmod(0o755)
    (tmp_path / "vars.json").write_text("{}")
    tool = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from deploy.packer import run_packer;"
            " run_packer(sys.argv[1], sys.argv[2], 'local', sys.argv[3], packer_bin=sys.argv[4])",
            str(PACKER_DIR / "primal.json"),
            str(tmp_path / "vars.json"),
            str(tmp_path / "build.log"),
            str(fake),
        ],
        cwd=PACKER_DIR.parent,
        stdin=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while not (tmp_path / "packer.pid").is_file() and time.monotonic() < deadline:
            time.sleep(0.05)
        packer = int((tmp_path / "packer.pid").read_text())
        assert _alive(packer)
        tool.kill()  # SIGKILL: the tool runs no clean-up of its own
        tool.wait(timeout=10)
        deadline = time.monotonic() + 10
        while _alive(packer) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(packer), "packer outlived the tool"
    finally:
        tool.kill()
        tool.wait(timeout=10)


def subprocess_environ() -> dict[str, str]:
    import os

    return {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}


def _group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of process group PGID."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            found.append(int(entry.name))
    return found


@needs_packer
@pytest.mark.timeout(90)
def test_packer_held_in_a_silent_wait_dies_with_a_killed_tool(moto_endpoint: str, tmp_path: Path) -> None:
    """kill -9 of the tool while real Packer waits for an answer that never comes (a proxy holds every
    DescribeInstances): the watchdog ends Packer's whole process group, its plugin processes included."""
    source = _source_image(server_client(moto_endpoint, "ec2"))
    held = lambda action, agent: "hold" if action == "DescribeInstances" and "aws-sdk-go" in agent else "pass"  # noqa: E731
    with AwsProxy(moto_endpoint, held) as proxy:
        var_file = render_var_file(
            "packer-primal.vars.json.j2",
            _context(endpoint=proxy.url, source_ami=source, vpc_id="", subnet_id="", security_group_id=""),
            tmp_path / "vars.json",
        )
        tool = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import sys; from deploy.packer import run_packer;"
                " run_packer(sys.argv[1], sys.argv[2], 'local', sys.argv[3], cleanup_grace_s=3)",
                str(PACKER_DIR / "primal.json"),
                str(var_file),
                str(tmp_path / "build.log"),
            ],
            cwd=ROOT,
            env={**subprocess_environ(), **AWS_ENV},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
        )
        try:
            assert wait_until(lambda: any(what == "hold" for _, _, what in proxy.seen), 60), proxy.seen
            children = Path(f"/proc/{tool.pid}/task/{tool.pid}/children").read_text().split()
            [packer] = [int(pid) for pid in children if b"packer" in Path(f"/proc/{pid}/cmdline").read_bytes()]
            assert len(_group_members(packer)) >= 2  # packer and its builder's plugin process
            tool.kill()
            tool.wait(timeout=10)
            assert wait_until(lambda: not _group_members(packer), 30), f"left running: {_group_members(packer)}"
        finally:
            tool.kill()
            tool.wait(timeout=10)


def test_a_refused_permission_stops_a_packer_whose_cleanup_never_ends(tmp_path: Path) -> None:
    """Packer retries a cleanup the same policy refuses for ever: once AWS refused it a permission, it gets the
    denied grace, then an interrupt (which it ignores while cleaning up), then is killed; one line names it."""
    fake = tmp_path / "stuck-packer"
    fake.write_text(
        "#!/bin/bash\n"
        "trap '' INT\n"
        "echo '1,,ui,error,==> local: * Error Copying AMI: UnauthorizedOperation: User: arn:aws:iam::1:user/d"
        " is not authorized to perform: ec2:CopyImage'\n"
        "echo '1,,ui,say,==> local: Deregistering the AMI and deleting unencrypted temporary AMIs and snapshots'\n"
        "while :; do sleep 0.05; done\n"
    )
    fake.chmod(0o755)
    (tmp_path / "vars.json").write_text("{}")
    with pytest.raises(PackerError) as failure:
        run_packer(
            PACKER_DIR / "primal.json",
            tmp_path / "vars.json",
            "local",
            tmp_path / "build.log",
            on_progress=lambda _: None,
            timeout_s=60,
            packer_bin=str(fake),
            denied_grace_s=0.2,
        )
    message = str(failure.value)
    assert "\n" not in message
    assert "AWS refused it: User: arn:aws:iam::1:user/d is not authorized to perform: ec2:CopyImage" in message
