"""`inv local-cloud` started twice at once starts one server, which `inv local-cloud --stop` then stops."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import (
    FAKE_CREDENTIALS,
    REPO,
    TEST_TIME_SCALE,
    free_port,
    is_listening,
    local_env_text,
    server_client,
    subprocess_env,
    wait_until,
    write_env_folder,
)


def servers_on(port: int) -> list[int]:
    """The pids of embedded cloud servers listening on PORT (by their command line)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            command = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"deploy.motoserver" in command and str(port).encode() in command:
            found.append(int(entry.name))
    return found


@pytest.mark.timeout(120)
def test_two_starts_at_once_start_one_server_and_stop_stops_it(tmp_path: Path) -> None:
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    folder = write_env_folder(tmp_path / "env", {"lc.env": local_env_text(endpoint)})
    environ = subprocess_env(
        {**FAKE_CREDENTIALS, "DEPLOY_ENV_DIR": str(folder), "DEPLOY_WORK_DIR": str(tmp_path / "work")}
    )
    environ["LOCAL_TIME_SCALE"] = TEST_TIME_SCALE

    def inv(*args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "invoke", "local-cloud", "--env", "lc", *args],
            cwd=REPO,
            env=environ,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    try:
        starts = [inv(), inv()]
        outputs = [start.communicate(timeout=90)[0] for start in starts]
        assert [start.returncode for start in starts] == [0, 0], outputs
        assert sum("embedded cloud started at" in output for output in outputs) == 1, outputs
        [server] = servers_on(port)
        # Seeded once: one hosted zone of DOMAIN, one base image.
        zones = server_client(endpoint, "route53").list_hosted_zones()["HostedZones"]
        assert [zone["Name"] for zone in zones] == ["example.test."]
        ec2 = server_client(endpoint, "ec2")
        bases = ec2.describe_images(Owners=["self"], Filters=[{"Name": "name", "Values": ["local-base-*"]}])["Images"]
        assert len(bases) == 1, bases
        pid_file = tmp_path / "work" / "deploy" / "local-cloud" / f"moto-{port}.pid"
        assert int(pid_file.read_text().split()[0]) == server

        stop = inv("--stop")
        said = stop.communicate(timeout=60)[0]
        assert stop.returncode == 0 and f"stopped the embedded cloud at {endpoint} (pid {server})" in said, said
        assert wait_until(lambda: not servers_on(port), 10) and not is_listening(port)
    finally:
        for pid in servers_on(port):
            os.kill(pid, signal.SIGKILL)
