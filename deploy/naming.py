"""Resource names, as the original scripts chose them, so that environments they created can be adopted."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from deploy.config import Config

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
    def bake_security_group(self) -> str:
        """The security group of Packer's build instances: the tool's, tagged, so that Packer creates none
        (Packer 1.6.6 tags no temporary group, which no policy could then scope)."""
        return f"{self.stack}-bake"

    def packer_key_pair(self, when: str) -> str:
        """Packer's temporary key pair: the underscore after the stack keeps other stacks' out of a policy."""
        return f"packer_{self.stack}_{when}"

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

    def belongs(self, tags: dict[str, str]) -> bool:
        return belongs(tags, self.app, self.env)

    def tags(self, **extra: str) -> dict[str, str]:
        return {"App": self.app, "Env": self.env, "ManagedBy": MANAGED_BY, **extra}


def belongs(tags: dict[str, str], app: str, env: str) -> bool:
    """The ownership rule: no tag says another app or environment (the original scripts tagged nothing,
    so an untagged resource with this environment's name is this environment's). APP "shop" + ENV
    "eu-prod" and APP "shop-eu" + ENV "prod" share a stack name: their tags tell them apart."""
    return tags.get("App", app) == app and tags.get("Env", env) == env


def made_by_tool(tags: dict[str, str], app: str, env: str) -> bool:
    """Stricter: this tool made it for this environment (images: never delete what someone else baked)."""
    return tags.get("ManagedBy") == MANAGED_BY and (tags.get("App"), tags.get("Env")) == (app, env)


def names_for(config: Config) -> Names:
    return Names(app=config.app_name, env=config.env, domain=config.domain)


def tag_list(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"Key": key, "Value": value} for key, value in tags.items()]


def tag_value(resource: dict[str, Any], key: str) -> str:
    """The value of tag KEY in an AWS description's Tags list ('' when absent)."""
    return tags_of(resource).get(key, "")


def tags_of(resource: dict[str, Any]) -> dict[str, str]:
    """An AWS description's Tags list as a dict."""
    return {tag["Key"]: tag["Value"] for tag in resource.get("Tags") or []}
