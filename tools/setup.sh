#!/usr/bin/env bash
# Installs liftquant's build dependencies on Debian 12 (bookworm) or newer.
#
# Run as root on a fresh machine. When every package is already installed it does nothing,
# not even `apt-get update`, so CI runs stay fast (and then root is not needed).
set -euo pipefail

packages=(build-essential cmake pkg-config libjansson-dev libcmocka-dev libopenblas-dev)

missing=()
for package in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$package")
    fi
done

if [ "${#missing[@]}" -eq 0 ]; then
    echo "setup: all build dependencies are installed"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "setup: must run as root to install: ${missing[*]}" >&2
    exit 1
fi

echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends "${packages[@]}"
