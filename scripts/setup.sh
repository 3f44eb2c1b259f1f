#!/usr/bin/env bash
# Idempotent set-up for simkit: a virtual environment in .venv with simkit and its
# test, dist and dev extras installed in editable mode.
#
#   bash scripts/setup.sh        # create or refresh .venv
#
# Re-running is cheap: packages are reinstalled only when pyproject.toml changes.
# torch is seeded with the CPU wheel (torch==2.13.0) so that the unpinned
# dependency in pyproject.toml does not pull a multi-GB CUDA build; set
# SIMKIT_TORCH to another requirement (e.g. "torch>=2.4") to choose differently.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="${SIMKIT_VENV:-$root/.venv}"
torch_req="${SIMKIT_TORCH:-torch==2.13.0}"

log() { printf '[setup] %s\n' "$*" >&2; }

pick_python() {
    for candidate in python3.11 python3.12 python3.10 python3; do
        if command -v "$candidate" >/dev/null 2>&1 &&
           "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' 2>/dev/null; then
            echo "$candidate"; return 0
        fi
    done
    log "no Python >= 3.10 found on PATH"; return 1
}

if [ ! -x "$venv/bin/python" ]; then
    py="$(pick_python)"
    log "creating $venv with $($py --version)"
    "$py" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --upgrade pip
fi
pip=("$venv/bin/python" -m pip)

if ! "$venv/bin/python" -c 'import torch' >/dev/null 2>&1; then
    log "installing $torch_req"
    "${pip[@]}" install --quiet "$torch_req"
fi

stamp="$venv/.simkit-installed"
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    log "installing simkit and its dependencies (a few minutes the first time)"
    "${pip[@]}" install --quiet -e ".[test,dist,dev]"
    echo "$want" > "$stamp"
fi

# open3d's wheel links against the system libusb-1.0, which slim Debian images lack.
if ! o3d_err="$("$venv/bin/python" -c 'import open3d' 2>&1)"; then
    if [[ "$o3d_err" == *libusb* ]]; then
        if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
            log "installing Debian's libusb-1.0-0 for open3d"
            apt-get update -qq >/dev/null
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libusb-1.0-0 >/dev/null
        else
            log "open3d needs libusb-1.0: install it (Debian: apt-get install libusb-1.0-0)"
            exit 1
        fi
    fi
    "$venv/bin/python" -c 'import open3d' || { log "open3d still fails to import"; exit 1; }
fi
log "ready: $venv"
