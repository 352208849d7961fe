#!/usr/bin/env bash
# run.sh - `make run`: the broker in the foreground with its embedded defaults: ./data on
# 127.0.0.1:9292 (docs/broker.md). Arguments are passed to `turbine broker` (e.g. --smp 2).
# Ctrl-C (SIGINT) stops it in order. The loom demo that `make run` showed before the broker
# existed is still there: build/release/examples/hello_cores (make examples).
set -u
cd "$(dirname "$0")/.."
exec build/release/turbine broker "$@"
