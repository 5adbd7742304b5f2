#!/usr/bin/env bash
# Installs the system tools the test suite needs that pip cannot provide:
#   Debian's `chromium` and its matching `chromium-driver` (chromedriver), with which
#   tests/viz drives the static kedro-viz site in a headless browser (through Selenium).
# Idempotent: does nothing when both are already on the PATH. Never downloads a browser
# from anywhere but the system's package manager. `make test` runs it before pytest.
set -euo pipefail

have_tools() {
    command -v chromedriver >/dev/null 2>&1 &&
        { command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; }
}

if have_tools; then
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-test-tools: chromium and chromedriver are missing and this is not a" \
        "Debian/Ubuntu system (no apt-get); install them with your package manager." >&2
    exit 1
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "install-test-tools: chromium and chromedriver are missing; installing them needs" \
        "root. Run: sudo apt-get install chromium chromium-driver (or this script as root)." >&2
    exit 1
fi

echo "install-test-tools: installing Debian's chromium and chromium-driver (apt-get)..."
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
have_tools || { echo "install-test-tools: chromium installed but not found on PATH" >&2; exit 1; }
echo "install-test-tools: $(chromium --version 2>/dev/null || true)"
