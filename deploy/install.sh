#!/bin/sh
# Step 2 of the image (and of .ci/run): a virtualenv with the relay, from those wheels only.
# Usage: deploy/install.sh VENV_DIR WHEEL_DIR
set -eu
"${PYTHON:-python3}" -m venv "$1"
"$1/bin/pip" install --no-cache-dir --quiet --no-index --find-links "$2" overten-relay
