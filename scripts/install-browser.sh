#!/usr/bin/env bash
# Install a headless Chromium for the report tests (tests/python/test_report.py): Debian's
# `chromium` package, driven there through Playwright (installed by the `test` extra).
# Playwright's own browser download needs its CDN; Debian's package comes from the
# distribution's mirror, which CI machines reach.
set -euo pipefail

if command -v chromium >/dev/null 2>&1; then
    echo "chromium: $(chromium --version 2>/dev/null || echo present)"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-browser: no chromium on PATH and no apt-get to install it; install Chromium" \
        "and put it on PATH (or set LLMBENCH_CHROMIUM to its path)" >&2
    exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "install-browser: installing chromium needs root (or sudo)" >&2
        exit 1
    fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends chromium fonts-dejavu-core
echo "chromium: $(chromium --version)"
