#!/bin/bash
# Primal image provisioning (real AWS only): OS updates, python3, PRIMAL_PACKAGES and the unprivileged app user.
# PRIMAL_SCRIPT (the environment's own script, if any) runs after this one.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

# cloud-init may still be running apt on first boot; wait so we do not race for the dpkg lock.
if command -v cloud-init >/dev/null 2>&1; then
    cloud-init status --wait >/dev/null || true
fi

apt-get update -q
apt-get -y -q -o Dpkg::Options::=--force-confold upgrade
# PRIMAL_PACKAGES: extra Debian packages of the environment (names checked by the tool), space-separated.
read -r -a extra_packages <<<"${PRIMAL_PACKAGES//,/ }"
apt-get -y -q install python3 ca-certificates "${extra_packages[@]}"
apt-get clean

# System user without a login shell; the carnivore service runs as it.
if ! id app >/dev/null 2>&1; then
    useradd --system --user-group --home-dir /opt/app --no-create-home --shell /usr/sbin/nologin app
fi

python3 --version
