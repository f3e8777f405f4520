#!/bin/sh
# Step 1 of the image (and of .ci/run): wheels for the relay and everything it needs.
# Usage: deploy/build-wheels.sh WHEEL_DIR [SOURCE_DIR]
set -eu
# the versions are the lock's (constraints.txt, `make lock`), the ones the tests ran with
"${PYTHON:-python3}" -m pip wheel --no-cache-dir --quiet --constraint "${2:-.}/constraints.txt" \
  --wheel-dir "$1" "${2:-.}"
