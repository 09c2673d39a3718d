"""Configuration and naming: pure unit tests, no AWS and no network."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import REPO, write_env_folder

from deploy.config import ConfigError, default_env_name, load_config, print_warnings
from deploy.errors import DeployError
from deploy.naming import Names, stamp

GOOD = "DOMAIN=example.com\n"


def load(tmp_path: Path, text: str = GOOD, env: str = "test", environ: dict[str, str] | None = None, **files: str):
    """load_config of ENV from a folder holding defaults.env, ENV.env=TEXT and FILES; no real environment."""
    folder = write_env_folder(tmp_path / "env", {f"{env}.env": text, **files})
    return load_config(env, folder=folder, environ=environ or {})


def config_error(tmp_path: Path, text: str, env: str = "test", **kwargs) -> str:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text, env=env, **kwargs)
    return str(caught.value)


def test_a_good_file_loads_with_typed_values(tmp_path):
    config = load(tmp_path, GOOD + "SSH_CIDR=203.0.113.7/32\nSUBNET_IDS=subnet-0abc1234, subnet-0def5678\n")
    assert config.env == "test"
    assert config.app_name == "webapp"
    assert config.region == "us-east-1"
    assert config.desired_capacity == 2
    assert config.cleanup is True
    assert config.local_cloud is False
    assert config.endpoint_url is None
    assert config.ssh_cidr == "203.0.113.7/32"
    assert config.subnet_ids == ("subnet-0abc1234", "subnet-0def5678")
    assert config.hosted_zone_id is None
    assert config.warnings == ()


@pytest.mark.parametrize("env", ["staging", "production", "dev01", "local"])
def test_the_repositorys_env_files_are_valid(env):
    config = load_config(env, folder=REPO / "env", environ={})
    assert config.env == env


def test_unknown_environment_names_the_missing_file_and_lists_environments(tmp_path):
    folder = write_env_folder(tmp_path / "env", {"alpha.env": GOOD, "beta.env": GOOD})
    with pytest.raises(ConfigError) as caught:
        load_config("gamma", folder=folder, environ={})
    message = str(caught.value)
    assert "'gamma'" in message
    assert "gamma.env" in message
    assert "alpha, beta" in message
    assert "defaults" not in message.split("Environments in")[1]


def test_an_environment_name_that_is_not_a_name_is_refused(tmp_path):
    folder = write_env_folder(tmp_path / "env", {"test.env": GOOD})
    with pytest.raises(ConfigError, match="letters, digits"):
        load_config("../test", folder=folder, environ={})


def test_config_error_is_a_deploy_error():
    assert issubclass(ConfigError, DeployError)


def test_missing_key_names_the_file_and_the_key(tmp_path):
    message = config_error(tmp_path, "# no DOMAIN here\n")
    assert "test.env" in message
    assert "DOMAIN is missing or empty" in message


def test_empty_key_names_the_file_that_emptied_it(tmp_path):
    message = config_error(tmp_path, GOOD + "INSTANCE_TYPE=\n")
    assert "test.env" in message
    assert "INSTANCE_TYPE is missing or empty" in message


def test_an_empty_environment_variable_counts_as_missing(tmp_path):
    message = config_error(tmp_path, GOOD, environ={"APP_NAME": "  "})
    assert "environment variable" in message
    assert "APP_NAME is missing or empty" in message


@pytest.mark.parametrize(
    ("line", "key", "hint"),
    [
        ("MAX_CAPACITY=four", "MAX_CAPACITY", "whole number"),
        ("HEALTH_TIMEOUT=0", "HEALTH_TIMEOUT", "1 or more"),
        ("MIN_CAPACITY=-1", "MIN_CAPACITY", "0 or more"),
        ("APP_NAME=web_app", "APP_NAME", "letters, digits"),
        ("APP_NAME=-webapp", "APP_NAME", "letters, digits"),
        ("AWS_REGION=US-East-1", "AWS_REGION", "region"),
        ("AWS_REGION=useast1", "AWS_REGION", "region"),
        ("SSH_CIDR=203.0.113.7/40", "SSH_CIDR", "CIDR"),
        ("SSH_CIDR=my-office", "SSH_CIDR", "CIDR"),
        ("LOCAL_CLOUD=maybe", "LOCAL_CLOUD", "true or false"),
        ("AWS_ENDPOINT_URL=127.0.0.1:5055", "AWS_ENDPOINT_URL", "URL"),
        ("HEALTH_CHECK_PATH=api/health", "HEALTH_CHECK_PATH", "path"),
        ("HOSTED_ZONE_ID=zone1", "HOSTED_ZONE_ID", "zone id"),
        ("SUBNET_IDS=subnet-0abc1234,sn-1", "SUBNET_IDS", "sn-1"),
        ("DOMAIN=localhost", "DOMAIN", "domain"),
    ],
)
def test_bad_value_names_the_file_the_key_and_what_is_expected(tmp_path, line, key, hint):
    message = config_error(tmp_path, GOOD + line + "\n")
    assert "test.env" in message
    assert f"{key}=" in message
    assert hint in message


def test_a_bad_default_names_defaults_env(tmp_path):
    folder = write_env_folder(tmp_path / "env", {"test.env": GOOD})
    with (folder / "defaults.env").open("a") as handle:
        handle.write("POLL_SECONDS=soon\n")
    with pytest.raises(ConfigError) as caught:
        load_config("test", folder=folder, environ={})
    assert "defaults.env" in str(caught.value)
    assert "POLL_SECONDS=" in str(caught.value)


@pytest.mark.parametrize(
    ("low", "desired", "high"),
    [(3, 2, 4), (1, 5, 4), (2, 1, 1)],
)
def test_capacities_must_be_ordered(tmp_path, low, desired, high):
    text = GOOD + f"MIN_CAPACITY={low}\nDESIRED_CAPACITY={desired}\nMAX_CAPACITY={high}\n"
    message = config_error(tmp_path, text)
    assert "test.env" in message
    assert "MIN_CAPACITY <= DESIRED_CAPACITY <= MAX_CAPACITY" in message
    assert f"{low} <= {desired} <= {high}" in message


def test_capacities_may_be_equal(tmp_path):
    config = load(tmp_path, GOOD + "MIN_CAPACITY=3\nDESIRED_CAPACITY=3\nMAX_CAPACITY=3\n")
    assert (config.min_capacity, config.desired_capacity, config.max_capacity) == (3, 3, 3)


def test_app_name_and_env_must_fit_load_balancer_names(tmp_path):
    # "elb-" + APP_NAME-ENV <= 32 characters: 23 + 1 + 4 = 28 fits, one more does not.
    assert load(tmp_path / "fits", GOOD + "APP_NAME=" + "a" * 23 + "\n").app_name == "a" * 23
    message = config_error(tmp_path / "long", GOOD + "APP_NAME=" + "a" * 24 + "\n")
    assert "test.env" in message
    assert "APP_NAME" in message
    assert "29 characters" in message


def test_malformed_line_names_the_file_and_line(tmp_path):
    message = config_error(tmp_path, GOOD + "# a comment\n\nthis line is not a setting\n")
    assert "test.env, line 4" in message
    assert "KEY=value" in message
    assert "this line is not a setting" in message


def test_export_prefix_and_quotes_are_accepted(tmp_path):
    config = load(tmp_path, "export DOMAIN=\"example.org\"\nBUILD_COMMAND='make all'\n")
    assert config.domain == "example.org"
    assert config.build_command == "make all"


@pytest.mark.parametrize("endpoint", ["http://10.0.0.5:5055", "http://moto.internal:5055"])
def test_local_cloud_needs_a_loopback_endpoint(tmp_path, endpoint):
    message = config_error(tmp_path, GOOD + f"LOCAL_CLOUD=true\nAWS_ENDPOINT_URL={endpoint}\n")
    assert "test.env" in message
    assert "AWS_ENDPOINT_URL" in message
    assert "127.0.0.1" in message


def test_local_cloud_needs_an_endpoint(tmp_path):
    message = config_error(tmp_path, GOOD + "LOCAL_CLOUD=true\n")
    assert "LOCAL_CLOUD" in message
    assert "AWS_ENDPOINT_URL is empty" in message


def test_local_cloud_accepts_loopback(tmp_path):
    config = load(tmp_path, GOOD + "LOCAL_CLOUD=yes\nAWS_ENDPOINT_URL=http://localhost:5055/\n")
    assert config.local_cloud is True
    assert config.endpoint_url == "http://localhost:5055"


def test_defaults_then_env_file_then_environment_variable(tmp_path):
    text = GOOD + "APP_NAME=fromfile\nINSTANCE_TYPE=t3.large\n"
    config = load(tmp_path, text, environ={"INSTANCE_TYPE": "m5.xlarge", "UNRELATED": "x"})
    assert config.poll_seconds == 10  # defaults.env only
    assert re.fullmatch(r".*defaults\.env, line \d+", config.sources["POLL_SECONDS"])  # the file and the line
    assert config.app_name == "fromfile"  # the env file beats defaults.env
    assert re.fullmatch(r".*test\.env, line \d+", config.sources["APP_NAME"])
    assert config.instance_type == "m5.xlarge"  # the real environment beats both
    assert config.sources["INSTANCE_TYPE"] == "the environment variable INSTANCE_TYPE"


def test_the_default_environment_name():
    assert default_env_name({"DEPLOY_ENV": "dev01", "NODE_ENV": "production"}) == "dev01"
    assert default_env_name({"NODE_ENV": "production"}) == "production"
    assert default_env_name({"DEPLOY_ENV": "", "NODE_ENV": "production"}) == "production"
    assert default_env_name({}) == "staging"


def test_load_config_without_a_name_uses_the_default_name(tmp_path):
    folder = write_env_folder(tmp_path / "env", {"staging.env": GOOD, "test.env": GOOD, "dev01.env": GOOD})
    assert load_config(folder=folder, environ={}).env == "staging"
    assert load_config(folder=folder, environ={"NODE_ENV": "test"}).env == "test"
    assert load_config(folder=folder, environ={"NODE_ENV": "test", "DEPLOY_ENV": "dev01"}).env == "dev01"


def test_a_typo_warns_with_the_closest_key_and_does_not_fail(tmp_path):
    config = load(tmp_path, GOOD + "DESIRED_CAPACTY=3\n")
    assert config.desired_capacity == 2  # the misspelt key is not read
    assert len(config.warnings) == 1
    assert "test.env" in config.warnings[0]
    assert "DESIRED_CAPACTY" in config.warnings[0]
    assert "did you mean DESIRED_CAPACITY?" in config.warnings[0]
    stream = io.StringIO()
    print_warnings(config, stream)
    assert stream.getvalue().startswith("warning: test.env: DESIRED_CAPACTY")


def test_an_unknown_key_unlike_any_setting_warns_without_a_guess(tmp_path):
    config = load(tmp_path, GOOD + "COMPLETELY_UNRELATED=1\n")
    assert len(config.warnings) == 1
    assert "COMPLETELY_UNRELATED" in config.warnings[0]
    assert "did you mean" not in config.warnings[0]


# --- naming ---------------------------------------------------------------------------------------


def test_host_is_the_apex_for_production_and_a_subdomain_otherwise():
    assert Names("webapp", "production", "example.com").host == "example.com"
    assert Names("webapp", "staging", "example.com").host == "staging.example.com"
    assert Names("webapp", "dev01", "example.com").host == "dev01.example.com"


def test_resource_names_follow_the_original_scripts():
    names = Names("webapp", "staging", "example.com")
    assert names.load_balancer == "elb-webapp-staging"
    assert names.key_pair == "webapp-staging"
    assert names.lb_security_group == "webapp-staging-lb"
    assert names.instance_security_group == "webapp-staging-web"
    assert names.group("20240102030405") == "asg-webapp-staging-20240102030405"
    assert names.launch_template("20240102030405") == "lt-webapp-staging-20240102030405"
    assert names.tags(Name="x") == {"App": "webapp", "Env": "staging", "ManagedBy": "immutable-deploy", "Name": "x"}


def test_image_names_are_unique_within_a_second():
    names = Names("webapp", "staging", "example.com")
    first, second = names.image("primal", "20240102030405"), names.image("primal", "20240102030405")
    assert first != second
    assert first.startswith("webapp-staging-primal-20240102030405-")


def test_stamp_sorts_in_time_order():
    assert stamp(datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)) == "20240102030405"
    assert stamp(datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)) < stamp(datetime(2024, 1, 10, 0, 0, 0, tzinfo=UTC))


def test_owns_does_not_confuse_dev_with_dev_eu_or_dev01():
    dev = Names("webapp", "dev", "example.com")
    dev_eu = Names("webapp", "dev-eu", "example.com")
    dev01 = Names("webapp", "dev01", "example.com")
    when = "20240102030405"
    assert dev.owns(dev.group(when), dev.group_prefix)
    assert not dev.owns(dev_eu.group(when), dev.group_prefix)
    assert not dev.owns(dev01.group(when), dev.group_prefix)
    assert not dev_eu.owns(dev.group(when), dev_eu.group_prefix)
    assert dev_eu.owns(dev_eu.group(when), dev_eu.group_prefix)
    assert not dev.owns(dev_eu.launch_template(when), dev.launch_template_prefix)
    assert dev.owns(dev.launch_template(when), dev.launch_template_prefix)
    assert not dev.owns("asg-otherapp-dev-" + when, dev.group_prefix)
    assert dev.owns(dev.launch_configuration_prefix + when, dev.launch_configuration_prefix)


def test_every_setting_is_documented_in_the_configuration_reference() -> None:
    from pathlib import Path

    from deploy.settings import SETTINGS

    readme = (Path(__file__).resolve().parent.parent / "docs" / "configuration.md").read_text(encoding="utf-8")
    missing = [setting.key for setting in SETTINGS if f"| `{setting.key}` |" not in readme]
    assert missing == []


# --- issue 10: bounds, BOM, duplicates, origins, SSH_CIDR (refused before any AWS call: load_config reads only
# files and the environment, so nothing can have been created) ------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "bound"),
    [
        ("MAX_CAPACITY", "99999999999", "at most 1000"),
        ("DESIRED_CAPACITY", "1001", "at most 1000"),
        ("MIN_CAPACITY", "5000", "at most 1000"),
        ("POLL_SECONDS", "99999999999999999999", "at most 3600 seconds"),
        ("HEALTH_TIMEOUT", "99999999999999999999", "at most 86400 seconds"),
        ("PACKER_TIMEOUT", "99999999999999999999", "at most 86400 seconds"),
        ("BUILD_TIMEOUT", "86401", "at most 86400 seconds"),
    ],
)
def test_capacities_and_durations_have_documented_upper_bounds(tmp_path, key, value, bound):
    with pytest.raises(ConfigError) as refused:
        load(tmp_path, GOOD + f"{key}={value}\n")
    assert f"{key}='{value}' must be {bound}" in str(refused.value)
    readme = (REPO / "docs" / "configuration.md").read_text(encoding="utf-8")
    row = next(line for line in readme.splitlines() if line.startswith(f"| `{key}` |"))
    assert re.search(r"\b(1000|86400|3600)\)", row), row  # the bound is documented


def test_build_timeout_is_a_setting(tmp_path):
    assert load(tmp_path).build_timeout == 1800
    assert load(tmp_path / "b", GOOD + "BUILD_TIMEOUT=60\n").build_timeout == 60


def test_an_env_file_starting_with_a_bom_is_refused_naming_the_bom(tmp_path):
    folder = write_env_folder(tmp_path / "env", {})
    (folder / "test.env").write_bytes(b"\xef\xbb\xbf" + GOOD.encode())
    with pytest.raises(ConfigError, match=r"test\.env starts with a byte order mark \(BOM"):
        load_config("test", folder=folder, environ={})


def test_a_key_set_twice_is_warned_about_with_both_lines(tmp_path):
    lines = GOOD.count("\n")
    config = load(tmp_path, GOOD + "POLL_SECONDS=5\nPOLL_SECONDS=7\n")
    assert config.poll_seconds == 7
    expected = f"test.env: POLL_SECONDS is set twice, on line {lines + 1} and line {lines + 2}; line {lines + 2} wins"
    assert expected in config.warnings


def test_a_bad_value_names_its_file_and_line_or_its_environment_variable(tmp_path):
    lines = GOOD.count("\n")
    with pytest.raises(ConfigError, match=rf"test\.env, line {lines + 1}: MAX_CAPACITY='many'"):
        load(tmp_path, GOOD + "MAX_CAPACITY=many\n")
    with pytest.raises(ConfigError, match=r"^the environment variable MAX_CAPACITY: MAX_CAPACITY='lots'"):
        load(tmp_path / "b", environ={"MAX_CAPACITY": "lots"})


def test_ssh_cidr_must_be_canonical_and_the_whole_internet_is_warned_about(tmp_path):
    with pytest.raises(ConfigError) as refused:
        load(tmp_path, GOOD + "SSH_CIDR=10.1.2.3/8\n")
    assert "it means 10.0.0.0/8" in str(refused.value) and "10.1.2.3/32" in str(refused.value)
    assert load(tmp_path / "b", GOOD + "SSH_CIDR=203.0.113.7/32\n").ssh_cidr == "203.0.113.7/32"
    config = load(tmp_path / "c", GOOD + "SSH_CIDR=0.0.0.0/0\n")
    assert any("SSH_CIDR=0.0.0.0/0 opens port 22" in warning for warning in config.warnings)


# --- values stay values: one line of printable text, quotes closed, names that fit ----------------------


@pytest.mark.parametrize(
    ("value", "named"),
    [
        ('"/api/status/health\\nINJECTED=pwned"', "a line break (LF)"),
        ('"/api/status/health\\rINJECTED=pwned"', "a carriage return (CR)"),
        ('"/api/status/health\x00"', "a NUL character"),
        ("/api/\u2028health", "the line separator U+2028"),  # a line separator to Python's splitlines
    ],
)
def test_a_control_character_in_a_file_is_refused_with_its_key_and_line(tmp_path, value, named):
    message = config_error(tmp_path, GOOD + f"HEALTH_CHECK_PATH={value}\n")
    assert message.startswith("env/test.env, line 2: HEALTH_CHECK_PATH holds " + named), message


def test_a_control_character_in_an_environment_variable_is_refused_naming_it(tmp_path):
    message = config_error(tmp_path, environ={"START_COMMAND": "python3 server.py\nrm -rf /"}, text=GOOD)
    assert message.startswith("the environment variable START_COMMAND: START_COMMAND holds a line break"), message
    message = config_error(tmp_path, environ={"START_COMMAND": "python3\tserver.py"}, text=GOOD)
    assert "START_COMMAND holds the control character U+0009" in message


def test_app_env_can_never_gain_a_line():
    from deploy.steps.copy_over import app_env_text

    assert app_env_text([("ENV", "dev"), ("DOMAIN", "example.com")]) == "ENV=dev\nDOMAIN=example.com\n"
    with pytest.raises(DeployError, match="HEALTH_CHECK_PATH holds a line break"):
        app_env_text([("HEALTH_CHECK_PATH", "/api/status/health\nINJECTED=pwned")])


@pytest.mark.parametrize("line", ['DOMAIN="evil.test', "DOMAIN='evil.test", 'DOMAIN="evil.test\\"'])
def test_an_unterminated_quote_is_refused_with_its_line(tmp_path, line):
    message = config_error(tmp_path, f"APP_NAME=webapp\n{line}\nDOMAIN=example.com\n")
    assert "test.env, line 2: the value of DOMAIN opens a quote" in message and "not closed" in message


def test_closed_quotes_with_escapes_are_accepted(tmp_path):
    config = load(tmp_path, 'DOMAIN="example.com"\nSTART_COMMAND="echo \\"a\\" && python3 server.py"\n')
    assert config.start_command == 'echo "a" && python3 server.py'


def test_a_long_environment_name_is_blamed_on_itself_with_the_limits(tmp_path):
    env = "e" * 22  # webapp-eeee… : 29 characters
    message = config_error(tmp_path, GOOD, env=env)
    assert f"The environment name '{env}' has 22 characters" in message
    assert "APP_NAME=webapp" in message and "at most 21 fit" in message and "at most 28" in message


def test_an_environment_name_no_file_system_takes_is_refused_before_it_names_a_file(tmp_path):
    folder = write_env_folder(tmp_path / "env", {"test.env": GOOD})
    with pytest.raises(ConfigError) as caught:
        load_config("e" * 300, folder=folder, environ={})
    message = str(caught.value)
    assert "has 300 characters; at most 26 fit" in message and "File name too long" not in message


def test_a_script_name_the_system_refuses_is_named(tmp_path):
    message = config_error(tmp_path, GOOD + f"PRIMAL_SCRIPT={'s' * 300}.sh\n")
    assert "PRIMAL_SCRIPT" in message and "names a file the system refuses (File name too long)" in message


@pytest.mark.parametrize("path", ["/{{ 7*7 }}", "/health%i", "/a?b=c", '/x"y'])
def test_a_health_check_path_systemd_or_packer_would_interpret_is_refused(tmp_path, path):
    message = config_error(tmp_path, GOOD + f"HEALTH_CHECK_PATH='{path}'\n")
    assert "HEALTH_CHECK_PATH" in message and "letters, digits and . _ ~ / - only" in message


def test_a_script_packer_would_evaluate_is_refused(tmp_path):
    import os

    script = tmp_path / "{{ 7*7 }}" / "user.sh"
    script.parent.mkdir()
    script.write_text("#!/bin/sh\n")
    message = config_error(tmp_path, GOOD + f"CARNIVORE_SCRIPT={os.path.relpath(script, REPO)}\n")
    assert "CARNIVORE_SCRIPT" in message and "must not hold '{{' (Packer would evaluate it)" in message
