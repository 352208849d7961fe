#!/usr/bin/env bash
# deps.sh - installs the Debian packages that loom/turbine need to build, test and benchmark.
# Idempotent: checks with dpkg-query first and only calls apt-get for what is missing.
set -euo pipefail

PACKAGES=(
    build-essential pkg-config
    liburing-dev        # io_uring (the one file src/uring.c uses it)
    libhwloc-dev        # CPU/NUMA topology for the app template
    valgrind            # valgrind.h / memcheck.h annotations and make test-valgrind
    clang clang-format  # fuzzing (later issues) and make format
    libuv1-dev          # benchmark baseline (loom IO)
    fio                 # benchmark baseline (loom IO, log)
    procps util-linux   # ps, taskset, script in tests
    curl                # metrics_test fetches the broker's /metrics
    libisal-dev         # CRC-32C (crc32_iscsi) for turbine RecordBatch v2
    librdkafka-dev      # reference RecordBatch bytes in turbine's batch_test
    libinih-dev         # the broker's key = value config file (<ini.h>, pkg-config inih)
    libhttp-parser-dev  # the broker's admin HTTP port (/metrics, /health)
    redis-server libhiredis-dev  # make bench-peers: Redis Streams and its load generator
    nats-server libnats-dev      # make bench-peers: NATS JetStream and its load generator
    gnuplot-nox                  # turbine bench --plot (optional: a clear message without it)
)

missing=()
for p in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps.sh: installing missing packages: ${missing[*]}" >&2
if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO=(sudo -n)
else
    echo "deps.sh: error: need root or password-less sudo to install: ${missing[*]}" >&2
    echo "deps.sh: run as root: apt-get install -y ${missing[*]}" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq || true
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "deps.sh: done" >&2
