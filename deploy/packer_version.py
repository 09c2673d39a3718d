"""Which Packer runs the bakes: `packer version` (and, from 1.10 on, its installed plugins) read once per run,
before the first bake; an unsupported one is refused with the command that fixes it."""

from __future__ import annotations

import re

from deploy.packer import INSTALL_HINT, PackerError, ask_packer, find_packer

# Packer versions this tool runs: Debian's 1.6.6 up to 1.9 (the amazon builder built in), and 1.10 or later 1.x
# with the amazon plugin installed (Packer 1.10 stopped bundling it).
OLDEST_PACKER = (1, 6, 6)
UNBUNDLED_FROM = (1, 10, 0)
AMAZON_PLUGIN = "github.com/hashicorp/amazon"
PLUGIN_INSTALL = f"packer plugins install {AMAZON_PLUGIN}"
SUPPORTED_PACKER = f"Packer 1.6.6 to 1.9 or 1.10 and later 1.x with the amazon plugin (`{PLUGIN_INSTALL}`)"


def parse_packer_version(output: str) -> tuple[int, int, int] | None:
    """(major, minor, patch) of `packer version` output ("Packer v1.6.6"), or None."""
    found = re.search(r"Packer v?(\d+)\.(\d+)\.(\d+)", output)
    return (int(found[1]), int(found[2]), int(found[3])) if found else None


def packer_refusal(exe: str, version: tuple[int, int, int] | None, plugins: str | None) -> str | None:
    """Why this Packer cannot bake (one message with the install command), or None. PLUGINS: the output of
    `packer plugins installed` (asked only of 1.10 and later)."""
    if version is None or not OLDEST_PACKER <= version < (2, 0, 0):
        shown = "an unknown version" if version is None else "Packer " + ".".join(map(str, version))
        return f"{exe} is {shown}; this tool supports {SUPPORTED_PACKER}. {INSTALL_HINT}"
    if version >= UNBUNDLED_FROM and AMAZON_PLUGIN not in (plugins or ""):
        return (
            f"{exe} is Packer {'.'.join(map(str, version))}, which has no amazon plugin (Packer 1.10 and later ship"
            f" none): install it with `{PLUGIN_INSTALL}`, then run again."
        )
    return None


def _ask(exe: str, *args: str) -> str:
    result = ask_packer([exe, *args])
    return result.stdout + result.stderr if result.returncode == 0 else ""


_checked: set[str] = set()


def check_packer(packer_bin: str = "packer") -> None:
    """Read `packer version` (and, for 1.10 and later, its installed plugins) once per run, before the first
    bake: an unsupported Packer is refused before anything is created."""
    exe = find_packer(packer_bin)
    if exe in _checked:
        return
    version = parse_packer_version(_ask(exe, "version"))
    plugins = _ask(exe, "plugins", "installed") if version is not None and version >= UNBUNDLED_FROM else None
    refusal = packer_refusal(exe, version, plugins)
    if refusal:
        raise PackerError(refusal)
    _checked.add(exe)
