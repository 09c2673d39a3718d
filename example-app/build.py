"""Build the example app into dist/: the server plus a version.json unique to this build."""

import argparse
import json
import shutil
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent


def build(env: str, dist: Path = HERE / "dist") -> Path:
    # Start from an empty dist so no stale file from an earlier build gets shipped.
    shutil.rmtree(dist, ignore_errors=True)
    dist.mkdir(parents=True)
    shutil.copy2(HERE / "server.py", dist / "server.py")
    # Microseconds make every build differ, so each deploy is visibly a new version.
    # timezone.utc, not datetime.UTC: the app must also run on an image's older python3.
    now = datetime.now(timezone.utc)  # noqa: UP017
    version = {"built_at": now.isoformat(timespec="microseconds"), "env": env}
    (dist / "version.json").write_text(json.dumps(version) + "\n")
    return dist


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--env", required=True, help="environment name recorded in version.json")
    args = parser.parse_args()
    print(f"built {build(args.env)}")


if __name__ == "__main__":
    main()
