#!/usr/bin/env bash
# Set up and run the whole test suite on a fresh machine: Python packages, Debian's chromium, then pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
if [ ! -x /usr/bin/chromium ]; then
  # The browser tests drive Debian's chromium through playwright; never `playwright install` (it downloads).
  apt-get update -qq && apt-get install -y -qq chromium >/dev/null
fi
exec python3 -m pytest "$@"
