#!/bin/sh
# Step 1 of the image (and of .ci/run): wheels for the relay and everything it needs.
# Usage: deploy/build-wheels.sh WHEEL_DIR [SOURCE_DIR]
set -eu
"${PYTHON:-python3}" -m pip wheel --no-cache-dir --quiet --wheel-dir "$1" "${2:-.}"
