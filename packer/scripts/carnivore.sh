#!/bin/bash
# Carnivore image provisioning: install the staged app from /tmp/appserver into /opt/app and run
# START_COMMAND (given as START_COMMAND_B64) there as a systemd service, with PORT=APP_PORT. CARNIVORE_SCRIPT (the environment's
# own script, if any) runs after this one.
set -euo pipefail

SRC=/tmp/appserver
DEST=/opt/app
START=/usr/local/lib/immutable-deploy/start-app
HEALTH_CHECK_PATH="${HEALTH_CHECK_PATH:-/api/status/health}"
# START_COMMAND comes base64-encoded: Packer would evaluate a `{{` in it (see deploy/packer.py).
START_COMMAND="$(printf '%s' "${START_COMMAND_B64:-}" | base64 -d)"
APP_PORT="${APP_PORT:-80}"

# The path and port go verbatim into the unit file: refuse characters systemd would interpret (%, spaces, quotes).
if [[ ! "$HEALTH_CHECK_PATH" =~ ^/[A-Za-z0-9._~/-]*$ ]]; then
    echo "carnivore.sh: unsafe HEALTH_CHECK_PATH: $HEALTH_CHECK_PATH" >&2
    exit 1
fi
if [[ ! "$APP_PORT" =~ ^[0-9]{1,5}$ ]]; then
    echo "carnivore.sh: APP_PORT must be a port number, not: $APP_PORT" >&2
    exit 1
fi
if [[ -z "$START_COMMAND" || "$START_COMMAND" == *$'\n'* ]]; then
    echo "carnivore.sh: START_COMMAND must be one non-empty line" >&2
    exit 1
fi
if [[ ! -d "$SRC" ]] || [[ -z "$(ls -A "$SRC")" ]]; then
    echo "carnivore.sh: $SRC is missing or empty; was the app directory uploaded?" >&2
    exit 1
fi

# The primal image normally creates the user; keep working on an older primal that lacks it.
if ! id app >/dev/null 2>&1; then
    useradd --system --user-group --home-dir "$DEST" --no-create-home --shell /usr/sbin/nologin app
fi

# Root owns the code so the service user cannot modify what it runs.
rm -rf "$DEST"
mkdir -p "$DEST"
cp -a "$SRC/." "$DEST/"
chown -R root:root "$DEST"
chmod -R u=rwX,go=rX "$DEST"
rm -rf "$SRC"

# START_COMMAND goes into a script of its own, verbatim: systemd would otherwise interpret %, quotes and $.
mkdir -p "$(dirname "$START")"
{
    echo '#!/bin/sh'
    echo '# START_COMMAND of the environment, run in the installed app folder (written by carnivore.sh).'
    echo "cd $DEST"
    printf '%s\n' "$START_COMMAND"
} >"$START"
chmod 0755 "$START"

cat >/etc/systemd/system/app.service <<UNIT
[Unit]
Description=Application server (immutable-deploy)
Wants=network-online.target
After=network-online.target

[Service]
User=app
Group=app
WorkingDirectory=$DEST
# app.env: the environment's settings staged by copy-over (ENV, APP_NAME, DOMAIN, HEALTH_CHECK_PATH).
EnvironmentFile=-$DEST/app.env
Environment=PORT=$APP_PORT
Environment=HEALTH_CHECK_PATH=$HEALTH_CHECK_PATH
Environment=PYTHONUNBUFFERED=1
ExecStart=$START
# Any port, 80 included, without running as root.
AmbientCapabilities=CAP_NET_BIND_SERVICE
NoNewPrivileges=true
Restart=always
RestartSec=2

[Install]
WantedBy=multi-user.target
UNIT

systemctl daemon-reload
systemctl enable app.service
