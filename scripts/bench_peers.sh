#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# bench_peers.sh - the produce comparison with peer systems (make bench-peers): in one run on
# this machine, each system is started on 127.0.0.1 with a private data directory and port,
# loaded the same way (fixed-size records, a window of requests in flight, acknowledged), then
# stopped and its data removed. Servers run on CPU 0, load generators on CPU 1; each
# configuration runs PEERS_RUNS times from a fresh server and the medians are reported.
#
#   scripts/bench_peers.sh [BUILD_DIR]          (default build/release; make bench-peers builds)
#   PEERS_RUNS=3 PEERS_SECONDS=5 PEERS_SIZE=1024 PEERS_INFLIGHT=256 PEERS_WARMUP=0.5
#   PEERS_ONLY="redis nats turbine"             (the systems to run)
#
# Output: a "peer:" line per run (bench/peers/peer_load.h, plus the server's CPU time per
# record), then a table of medians; JSON records build/bench/peers_SYSTEM_CONFIG_produce_1KB.json
# (the format of bench/benchlib.h, plus mb_s, p50_us, p99_us and server_cpu_us_per_msg). The
# "bench:" lines (turbine's figure, each peer as its baseline) are printed only when turbine
# was measured. Exit status: 0 when every run that was attempted
# succeeded, 1 otherwise, 2 when a load generator is missing.
#
# A system is a function system_NAME that calls measure() once per configuration; adding one
# is adding a function and its name to SYSTEMS.
set -u

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root" || exit 2
build=${1:-build/release}

runs=${PEERS_RUNS:-3}
seconds=${PEERS_SECONDS:-5}
size=${PEERS_SIZE:-1024}
inflight=${PEERS_INFLIGHT:-256}
warmup=${PEERS_WARMUP:-0.5}
SYSTEMS=(${PEERS_ONLY:-redis nats turbine})
size_label=$((size / 1024))KB
[ $((size % 1024)) -eq 0 ] || size_label=${size}B

server_cpu=(taskset -c 0)
load_cpu=(taskset -c 1)
if [ "$(nproc --all)" -lt 2 ] || ! command -v taskset >/dev/null; then
    echo "bench_peers.sh: fewer than 2 CPUs (or no taskset): not pinning" >&2
    server_cpu=()
    load_cpu=()
fi

for prog in redis_load nats_load; do
    if [ ! -x "$build/bench/peers/$prog" ]; then
        echo "bench_peers.sh: $build/bench/peers/$prog missing (run: make bench-peers)" >&2
        exit 2
    fi
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/turbine-peers.XXXXXX")
results=$tmp/results # lines: KEY SYSTEM CONFIG msgs/s MB/s p50_us p99_us RUNS srv_us_per_msg
touch "$results"
server_pid=
failed=0

cleanup() {
    [ -n "$server_pid" ] && kill -KILL "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A TCP port nobody listens on (probed with bash's /dev/tcp), from a per-process range.
free_port() {
    local port
    for ((port = 20000 + ($$ * 7) % 30000; ; port++)); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { echo "$port"; return; }
    done
}

# Waits until the server (server_pid) accepts connections on $1; 1 if it died or 15 s passed.
wait_port() {
    local port=$1 i
    for ((i = 0; i < 300; i++)); do
        kill -0 "$server_pid" 2>/dev/null || return 1
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
        sleep 0.05
    done
    return 1
}

# Starts a server in the background, pinned to CPU 0: start_server LOG COMMAND...
start_server() {
    local log=$1
    shift
    "${server_cpu[@]}" "$@" >"$log" 2>&1 &
    server_pid=$!
}

# Stops the server: `$@` asks it to stop (or nothing: SIGTERM), then SIGKILL after 20 s.
stop_server() {
    local i
    if [ $# -gt 0 ]; then
        "$@" >/dev/null 2>&1 || kill -TERM "$server_pid" 2>/dev/null
    else
        kill -TERM "$server_pid" 2>/dev/null
    fi
    for ((i = 0; i < 400; i++)); do
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.05
    done
    kill -KILL "$server_pid" 2>/dev/null
    wait "$server_pid" 2>/dev/null
    server_pid=
}

# The server's CPU time so far (user + system, all its threads) in microseconds.
server_cpu_us() {
    # the fields after "PID (COMM) ": utime is the 12th, stime the 13th, in clock ticks
    sed 's/^.*) //' "/proc/$server_pid/stat" 2>/dev/null |
        awk -v hz="$(getconf CLK_TCK)" '{ printf "%.0f\n", ($12 + $13) * 1e6 / hz }'
}

# Runs the load generator on CPU 1 against port $2: load PROG PORT CONFIG [EXTRA ARGS...]
# Prints its "peer:" line plus srv_us_per_msg (the server's CPU time during the load, per
# record acknowledged, warm-up included) and appends it to $tmp/runs.
load() {
    local prog=$1 port=$2 config=$3
    shift 3
    local line status cpu_before cpu_after
    cpu_before=$(server_cpu_us)
    line=$("${load_cpu[@]}" "$prog" --port "$port" --size "$size" --inflight "$inflight" \
        --duration "$seconds" --warmup "$warmup" --config "$config" "$@")
    status=$?
    cpu_after=$(server_cpu_us)
    if [ $status -ne 0 ] || [[ $line != peer:* ]]; then
        echo "bench_peers.sh: $(basename "$prog") $config failed (exit status $status)" >&2
        return 1
    fi
    line=$(awk -v before="${cpu_before:-0}" -v after="${cpu_after:-0}" '{
        for (i = 4; i <= NF; i++) if ($i ~ /^total=/) total = substr($i, 7)
        printf "%s srv_us_per_msg=%.2f\n", $0, (total > 0 ? (after - before) / total : 0) }' \
        <<<"$line")
    echo "$line"
    echo "$line" >>"$tmp/runs"
}

# measure SYSTEM CONFIG START STOP PROG [EXTRA ARGS...]: PEERS_RUNS runs, each with a fresh
# server (START DIR PORT / STOP PORT are functions of the system) and data directory, then the
# medians into $results as KEY = SYSTEM_CONFIG.
measure() {
    local system=$1 config=$2 start=$3 stop=$4 prog=$5
    shift 5
    local run dir port ok=1
    : >"$tmp/runs"
    for ((run = 1; run <= runs; run++)); do
        dir=$tmp/$system-$config-$run
        mkdir -p "$dir"
        port=$(free_port)
        if ! "$start" "$dir" "$port" || ! wait_port "$port"; then
            echo "bench_peers.sh: $system ($config) did not start; its log:" >&2
            tail -n 20 "$dir"/*.log >&2 2>/dev/null
            stop_server
            ok=0
            break
        fi
        load "$prog" "$port" "$config" "$@" || ok=0
        "$stop" "$port"
        rm -rf "$dir"
        [ $ok -eq 1 ] || break
    done
    if [ $ok -eq 0 ]; then
        failed=1
        return 1
    fi
    # medians of each field over the runs (field=value pairs of the peer: lines)
    awk -v key="${system}_${config}" -v sys="$system" -v config="$config" '
        function median(a, n,    i, j, t) {
            for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] > a[j]; j--) {
                t = a[j]; a[j] = a[j - 1]; a[j - 1] = t
            }
            return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
        }
        {
            n++
            for (i = 4; i <= NF; i++) {
                split($i, kv, "=")
                v[kv[1], n] = kv[2]
            }
            all = all (n > 1 ? "," : "") v["msgs/s", n]
        }
        END {
            for (i = 1; i <= n; i++) { r[i] = v["msgs/s", i]; m[i] = v["MB/s", i]
                                       p[i] = v["p50_us", i]; q[i] = v["p99_us", i]
                                       c[i] = v["srv_us_per_msg", i] }
            printf "%s %s %s %.0f %.2f %.1f %.1f %s %.2f\n", key, sys, config, median(r, n),
                   median(m, n), median(p, n), median(q, n), all, median(c, n)
        }' "$tmp/runs" >>"$results"
}

# ---- Redis Streams (Debian redis-server): XADD pipelined by redis_load ----
redis_common=(--bind 127.0.0.1 --protected-mode no --daemonize no --save '' --io-threads 1)
redis_start_memory() {
    start_server "$1/redis.log" redis-server --port "$2" --dir "$1" "${redis_common[@]}" \
        --appendonly no
}
redis_start_aof_everysec() {
    start_server "$1/redis.log" redis-server --port "$2" --dir "$1" "${redis_common[@]}" \
        --appendonly yes --appendfsync everysec
}
redis_start_aof_always() {
    start_server "$1/redis.log" redis-server --port "$2" --dir "$1" "${redis_common[@]}" \
        --appendonly yes --appendfsync always
}
redis_stop() {
    stop_server redis-cli -p "$1" shutdown nosave
}
system_redis() {
    if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
        echo "redis-server not installed (scripts/deps.sh): skipped"
        return
    fi
    echo "== redis: $(redis-server --version | cut -d' ' -f3)"
    local config
    for config in memory aof_everysec aof_always; do
        measure redis "$config" "redis_start_$config" redis_stop "$build/bench/peers/redis_load"
    done
}

# ---- NATS JetStream (Debian nats-server -js): async publish with acks by nats_load ----
nats_start() {
    start_server "$1/nats.log" nats-server -a 127.0.0.1 -p "$2" -js -sd "$1"
}
nats_stop() {
    stop_server # SIGTERM: nats-server shuts down cleanly
}
system_nats() {
    if ! command -v nats-server >/dev/null; then
        echo "nats-server not installed (scripts/deps.sh): skipped"
        return
    fi
    echo "== nats: $(nats-server --version)"
    measure nats js nats_start nats_stop "$build/bench/peers/nats_load"
}

# ---- turbine: turbine broker --smp 1 --cpuset 0, loaded by `turbine bench produce` ----
# The load is turbine's own bench tool (turbine/cmd/bench.c, docs/benchmarks.md): one producer
# thread through the client library keeping `inflight` records unacknowledged, the peers'
# shape. $tmp/turbine_load maps peer_load.h's options onto it, and --peer-label makes it print
# the same "peer:" line. The broker's admin HTTP port is off (no fixed port to collide on).
turbine_start() {
    start_server "$1/turbine.log" "$build/turbine" broker --smp 1 --cpuset 0 \
        --data-dir "$1" --port "$2" --admin-port 0
}
turbine_stop() {
    stop_server
}
turbine_load_script() {
    local bin batches
    bin=$(cd "$build" && pwd)/turbine
    # The client sends records in batches (16 KiB: 15 records of 1 KB); the whole window of
    # `inflight` records may be on the wire, as the peers' pipelined requests are, so a
    # partition may have that many batches in flight (the client's default is 5).
    batches=$(( (inflight * size / 16384) + 1 ))
    cat >"$tmp/turbine_load" <<EOF
#!/usr/bin/env bash
# peer_load.h's options -> turbine bench produce (written by bench_peers.sh)
args=()
while [ \$# -gt 0 ]; do
    case \$1 in
    --port) args+=(--broker "127.0.0.1:\$2"); shift 2 ;;
    --host) shift 2 ;;
    --config) args+=(--peer-label "\$2"); shift 2 ;;
    *) args+=("\$1"); shift ;;
    esac
done
exec "$bin" bench produce --quiet --topic peers --max-in-flight "$batches" "\${args[@]}"
EOF
    chmod +x "$tmp/turbine_load"
}
system_turbine() {
    if [ ! -x "$build/turbine" ]; then
        echo "turbine not built yet: skipped"
        return
    fi
    turbine_load_script
    echo "== turbine (turbine bench produce)"
    local acks partitions
    for acks in 1 all; do
        for partitions in 1 8; do
            measure turbine "acks${acks}_p${partitions}" turbine_start turbine_stop \
                "$tmp/turbine_load" --acks "$acks" --partitions "$partitions"
        done
    done
}

# ---- output ----
# field N of the results line for KEY (4 msgs/s, 5 MB/s, 6 p50_us, 7 p99_us)
result() {
    awk -v key="$1" -v f="$2" '$1 == key { print $f }' "$results"
}

# Writes build/bench/NAME.json in benchlib's format: json NAME VALUE UNIT "BASELINE VALUE"...
# (baselines optional), with the runs and latencies of the turbine or peer KEY.
json() {
    local name=$1 value=$2 unit=$3 key=$4
    shift 4
    mkdir -p build/bench
    {
        printf '{"name":"%s","value":%.3f,"unit":"%s"' "$name" "$value" "$unit"
        if [ $# -gt 0 ]; then
            local first=1 b
            for b in "$@"; do
                set -- $b
                if [ $first -eq 1 ]; then
                    printf ',"baseline":"%s","baseline_value":%.3f,"ratio":%.4f' "$1" "$2" \
                        "$(awk -v a="$value" -v b="$2" 'BEGIN { print a / b }')"
                    printf ',"baselines":['
                else
                    printf ','
                fi
                printf '{"baseline":"%s","baseline_value":%.3f,"ratio":%.4f}' "$1" "$2" \
                    "$(awk -v a="$value" -v b="$2" 'BEGIN { print a / b }')"
                first=0
            done
            printf ']'
        fi
        printf ',"mb_s":%s,"p50_us":%s,"p99_us":%s,"server_cpu_us_per_msg":%s,"runs":[%s]}\n' \
            "$(result "$key" 5)" "$(result "$key" 6)" "$(result "$key" 7)" "$(result "$key" 9)" \
            "$(result "$key" 8)"
    } >"build/bench/$name.json.tmp" && mv "build/bench/$name.json.tmp" "build/bench/$name.json"
}

print_table() {
    echo
    echo "== peer comparison: produce ${size_label} records, $inflight in flight, medians of" \
        "$runs runs of ${seconds} s (servers on CPU 0, load on CPU 1)"
    printf '%-8s %-13s %9s %8s %9s %9s %9s  %s\n' system config msgs/s MB/s p50_us p99_us \
        srv_us/msg "runs (msgs/s)"
    awk '{ printf "%-8s %-13s %9.0f %8.2f %9.1f %9.1f %9.2f  %s\n", $2, $3, $4, $5, $6, $7, $9,
           $8 }' "$results"
    echo "(srv_us/msg: the server's CPU time per record, user + system, from /proc/PID/stat)"
}

# The bench: lines, turbine's figure against each peer (ratio = turbine / peer), when both
# were measured.
report_bench_lines() {
    local name=peers_produce_${size_label} fsync=peers_produce_fsync_${size_label}
    local value fvalue b bv baselines=() fbaselines=()
    value=$(result turbine_acks1_p1 4)
    fvalue=$(result turbine_acksall_p1 4)
    if [ -z "$value$fvalue" ]; then
        echo "turbine not measured: no bench: lines (peer figures in build/bench/peers_*.json)"
        return
    fi
    for b in redis_memory redis_aof_always nats_js; do
        bv=$(result "$b" 4)
        [ -n "$bv" ] && [ -n "$value" ] || continue
        awk -v n="$name" -v v="$value" -v b="$b" -v bv="$bv" \
            'BEGIN { printf "bench: %s %.2f msgs/s baseline=%s ratio=%.3f\n", n, v, b, v / bv }'
        baselines+=("$b $bv")
    done
    [ -n "$value" ] && json "$name" "$value" msgs/s turbine_acks1_p1 "${baselines[@]}"
    bv=$(result redis_aof_always 4)
    if [ -n "$fvalue" ] && [ -n "$bv" ]; then
        awk -v n="$fsync" -v v="$fvalue" -v bv="$bv" 'BEGIN {
            printf "bench: %s %.2f msgs/s baseline=redis_aof_always ratio=%.3f\n", n, v, v / bv }'
        fbaselines+=("redis_aof_always $bv")
        json "$fsync" "$fvalue" msgs/s turbine_acksall_p1 "${fbaselines[@]}"
    fi
}

for system in "${SYSTEMS[@]}"; do
    if ! declare -F "system_$system" >/dev/null; then
        echo "bench_peers.sh: unknown system $system" >&2
        failed=1
        continue
    fi
    "system_$system"
done

while read -r key _; do
    json "peers_${key}_produce_${size_label}" "$(result "$key" 4)" msgs/s "$key"
done <"$results"
print_table
echo
report_bench_lines
exit $failed
