#!/bin/bash
# Carnivore image provisioning: install the staged app from /tmp/appserver into /opt/app
# and run it as a systemd service on port 80.
set -euo pipefail

SRC=/tmp/appserver
DEST=/opt/app
HEALTH_CHECK_PATH="${HEALTH_CHECK_PATH:-/api/status/health}"

# The path goes verbatim into the unit file: refuse characters systemd would interpret (%, spaces, quotes).
if [[ ! "$HEALTH_CHECK_PATH" =~ ^/[A-Za-z0-9._~/-]*$ ]]; then
    echo "carnivore.sh: unsafe HEALTH_CHECK_PATH: $HEALTH_CHECK_PATH" >&2
    exit 1
fi
if [[ ! -f "$SRC/server.py" ]]; then
    echo "carnivore.sh: $SRC/server.py missing; was the app directory uploaded?" >&2
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
Environment=PORT=80
Environment=HEALTH_CHECK_PATH=$HEALTH_CHECK_PATH
Environment=PYTHONUNBUFFERED=1
ExecStart=/usr/bin/python3 $DEST/server.py
# Port 80 without running as root.
AmbientCapabilities=CAP_NET_BIND_SERVICE
NoNewPrivileges=true
Restart=always
RestartSec=2

[Install]
WantedBy=multi-user.target
UNIT

systemctl daemon-reload
systemctl enable app.service
