#!/bin/sh
# The system tools some tests use, installed from Debian's packages when this machine can (root or
# passwordless sudo, apt-get). Called by `make test` and `.ci/run`. Where a tool cannot be installed, the
# tests that need it are skipped with a line naming the package (tests/support/tools.py); with CI=true
# they fail instead, and so does this script.
#
#   tool      package(s)                                                           used by
#   soffice   libreoffice-calc-nogui libreoffice-writer-nogui libreoffice-impress-nogui   PDF/PNG exports
#   chromium  chromium                                                             the dashboard's browser test
#   npm       nodejs npm                                                           Zapier's validator and runtime
#   redis-server  redis-server                                                     primaries, replicas, sentinels
set -u

missing=""
command -v soffice >/dev/null 2>&1 || missing="$missing libreoffice-calc-nogui libreoffice-writer-nogui libreoffice-impress-nogui"
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || missing="$missing chromium"
command -v npm >/dev/null 2>&1 || missing="$missing nodejs npm"
command -v redis-server >/dev/null 2>&1 || missing="$missing redis-server"
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
  sudo=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  sudo="sudo -n"
else
  sudo="none"
fi

if [ "$sudo" != "none" ] && command -v apt-get >/dev/null 2>&1; then
  echo "system-tools: installing$missing (Debian packages; about a minute the first time)"
  $sudo apt-get update -qq >/dev/null 2>&1
  # shellcheck disable=SC2086
  if DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null; then
    exit 0
  fi
  echo "system-tools: apt-get could not install$missing" >&2
else
  echo "system-tools: cannot install$missing here (needs root or passwordless sudo, and apt-get)" >&2
fi

if [ "${CI:-}" = "true" ]; then
  echo "system-tools: CI=true, so the tests that need them would fail: stopping" >&2
  exit 1
fi
echo "system-tools: the tests that need them will be skipped, each naming its package" >&2
exit 0
