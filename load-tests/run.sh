#!/bin/sh
# The load tests' one command: see load-tests/README.md. Arguments go to `run`
# (e.g. --quick, --profile, --servers f,c).
set -eu
cd "$(dirname "$0")/.."
exec cargo run --release -p load-tests --bin run -- "$@"
