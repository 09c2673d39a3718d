"""What a Packer build is handed: its variable file (values as data, never as templates) and its template as a
bake runs it (a public IP asked for only where needed)."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2

from deploy.packer import ROOT, PackerError

TEMPLATES_DIR = ROOT / "templates"
TEMPLATE_MARK = "{{"  # what starts a Go template action in any Packer string


def _json_default(value: Any) -> Any:
    # tojson would otherwise report a missing variable as "StrictUndefined is not JSON serializable".
    if isinstance(value, jinja2.Undefined):
        value._fail_with_undefined_error()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _b64(value: object) -> str:
    return base64.b64encode(str(value).encode("utf-8")).decode("ascii")


def render_var_file(template_name: str, context: Mapping[str, Any], dest_path: str | Path) -> Path:
    """Render templates/TEMPLATE_NAME with CONTEXT into the Packer variable file DEST_PATH.

    Packer evaluates `{{` in a variable's value (1.6.6 once when it reads the value and again where it is used),
    so free text (START_COMMAND) goes through the `b64` filter and its script decodes it; any other value holding
    `{{` is refused, naming it: nothing a user configures is ever evaluated by Packer.
    """
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    environment.policies["json.dumps_kwargs"] = {"sort_keys": True, "default": _json_default}
    environment.filters["b64"] = _b64
    try:
        text = environment.get_template(template_name).render(**context)
    except jinja2.TemplateNotFound as error:
        raise PackerError(f"Packer variable template {TEMPLATES_DIR / str(error)} does not exist.") from None
    except jinja2.UndefinedError as error:
        raise PackerError(f"Cannot render {template_name}: {error}.") from None
    # Packer 1.6.6 only takes strings in a var file; a None or number is a bug in the caller.
    for name, value in json.loads(text).items():
        if not isinstance(value, str):
            raise PackerError(f"Cannot render {template_name}: {name} must be a string, got {value!r}.")
        if TEMPLATE_MARK in value:
            raise PackerError(
                f"The Packer variable {name} ({value!r}) holds {TEMPLATE_MARK!r}, which Packer would evaluate as a"
                " template: rename or move what it names."
            )
    dest = Path(dest_path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(text, encoding="utf-8")
    return dest


def render_template(source: str | Path, dest: str | Path, public_ip: bool) -> Path:
    """Write packer/ROLE.json as this bake runs it into DEST: its `aws` builder asks for a public IP (and ssh goes
    to it) only when PUBLIC_IP, since the subnet gives none; otherwise `associate_public_ip_address` stays unset.
    (Packer 1.6.6 read an explicit false as "the subnet's default", the current amazon plugin as "no public IP".)"""
    template = json.loads(Path(source).read_text(encoding="utf-8"))
    for builder in template["builders"]:
        if builder.get("name") == "aws" and public_ip:
            builder.update(associate_public_ip_address=True, ssh_interface="public_ip")
    target = Path(dest)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(template, indent=2) + "\n", encoding="utf-8")
    return target
