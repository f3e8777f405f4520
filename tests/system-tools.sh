#!/bin/sh
# The system tools some tests use, installed before the tests start, so a first run on a new machine has
# nothing installing beside the tests. Called by `make test` and `.ci/run`, with PYTHON naming the venv's
# python. Where a tool cannot be installed, the tests that need it are skipped with a line naming the package
# (tests/support/tools.py); with CI=true they fail instead, and so does this script.
#
# Debian packages, installed when this machine can (root or passwordless sudo, apt-get):
#   tool      package(s)                                                           used by
#   soffice   libreoffice-calc-nogui libreoffice-writer-nogui libreoffice-impress-nogui   PDF/PNG exports
#   chromium  chromium                                                             the dashboard's browser test
#   npm       nodejs npm                                                           Zapier's validator and runtime
#   redis-server  redis-server                                                     primaries, replicas, sentinels
# Then, with npm: Zapier's validator and runtime (zapier-platform-schema and -core) into the user's cache
# directory (~/.cache/overten-relay), once per version (tests/connectors/zapier_support.py); and the OpenID
# provider the sign-in tests run, oidc-provider (tests/support/oidc_provider.py).
set -u
PYTHON="${PYTHON:-python3}"

fail() {
  echo "system-tools: $1" >&2
  if [ "${CI:-}" = "true" ]; then
    echo "system-tools: CI=true, so the tests that need them would fail: stopping" >&2
    exit 1
  fi
  echo "system-tools: the tests that need them will be skipped, each naming its package" >&2
}

missing=""
command -v soffice >/dev/null 2>&1 || missing="$missing libreoffice-calc-nogui libreoffice-writer-nogui libreoffice-impress-nogui"
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || missing="$missing chromium"
command -v npm >/dev/null 2>&1 || missing="$missing nodejs npm"
command -v redis-server >/dev/null 2>&1 || missing="$missing redis-server"

if [ -n "$missing" ]; then
  if [ "$(id -u)" -eq 0 ]; then
    sudo=""
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo="sudo -n"
  else
    sudo="none"
  fi
  if [ "$sudo" = "none" ] || ! command -v apt-get >/dev/null 2>&1; then
    fail "cannot install$missing here (needs root or passwordless sudo, and apt-get)"
  else
    echo "system-tools: installing$missing (Debian packages, about a minute the first time; the tests start after)"
    $sudo apt-get update -qq >/dev/null 2>&1
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null \
      || fail "apt-get could not install$missing"
  fi
fi

if command -v npm >/dev/null 2>&1; then
  "$PYTHON" -m tests.connectors.zapier_support || fail "npm could not install Zapier's packages"
  "$PYTHON" -m tests.support.oidc_provider || fail "npm could not install oidc-provider"
fi
exit 0
