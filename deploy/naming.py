"""Resource names, as the original scripts chose them, so that environments they created can be adopted."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

STAMP_FORMAT = "%Y%m%d%H%M%S"
MANAGED_BY = "immutable-deploy"


def stamp(now: datetime | None = None) -> str:
    """YYYYmmddHHMMSS in UTC: sorts in time order, as the original group names do."""
    return (now or datetime.now(UTC)).strftime(STAMP_FORMAT)


@dataclass(frozen=True)
class Names:
    """Every name of one environment, derived from APP_NAME and the environment name."""

    app: str
    env: str
    domain: str

    @property
    def stack(self) -> str:
        return f"{self.app}-{self.env}"

    @property
    def load_balancer(self) -> str:
        """The classic load balancer (the original scripts' name)."""
        return f"elb-{self.stack}"

    @property
    def application_load_balancer(self) -> str:
        return f"alb-{self.stack}"

    @property
    def target_group(self) -> str:
        return f"tg-{self.stack}"

    @property
    def key_pair(self) -> str:
        return self.stack

    @property
    def lb_security_group(self) -> str:
        return f"{self.stack}-lb"

    @property
    def instance_security_group(self) -> str:
        return f"{self.stack}-web"

    @property
    def host(self) -> str:
        """ENV.DOMAIN; the apex DOMAIN for production."""
        # Lower case, as Route 53 returns names: an upper-case ENV must not redo the record every run.
        return self.domain if self.env == "production" else f"{self.env}.{self.domain}".lower()

    def group(self, when: str) -> str:
        return f"asg-{self.stack}-{when}"

    def launch_template(self, when: str) -> str:
        return f"lt-{self.stack}-{when}"

    def image(self, role: str, when: str) -> str:
        # The random suffix keeps names unique when two bakes start in the same second.
        return f"{self.stack}-{role}-{when}-{secrets.token_hex(3)}"

    @property
    def group_prefix(self) -> str:
        return f"asg-{self.stack}-"

    @property
    def launch_template_prefix(self) -> str:
        return f"lt-{self.stack}-"

    @property
    def launch_configuration_prefix(self) -> str:
        """The original scripts' launch configurations, recognised so that they can be retired."""
        return f"lc-{self.stack}-"

    def owns(self, name: str, prefix: str) -> bool:
        """Whether NAME is this environment's, not a longer-named one's (asg-app-dev vs asg-app-dev01-…)."""
        if not name.startswith(prefix):
            return False
        return re.fullmatch(r"\d{14}|[0-9A-Za-z]+", name[len(prefix) :]) is not None

    def tags(self, **extra: str) -> dict[str, str]:
        return {"App": self.app, "Env": self.env, "ManagedBy": MANAGED_BY, **extra}


def names_for(config) -> Names:
    return Names(app=config.app_name, env=config.env, domain=str(config.domain))


def tag_list(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"Key": key, "Value": value} for key, value in tags.items()]


def tag_value(resource: dict, key: str) -> str:
    """The value of tag KEY in an AWS description's Tags list ('' when absent)."""
    return next((tag["Value"] for tag in resource.get("Tags", []) if tag["Key"] == key), "")


def tags_of(resource: dict) -> dict[str, str]:
    """An AWS description's Tags list as a dict."""
    return {tag["Key"]: tag["Value"] for tag in resource.get("Tags") or []}
