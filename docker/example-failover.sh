#!/usr/bin/env bash
# Brings docker/docker-compose.yml up, runs `cargo run --example failover` against it through
# the address map, asks Sentinel to fail over midway, prints the example's summary, and brings
# everything down. Fails when the example surfaced an error or lost an acknowledged write.
#
#   REDIS_IMAGE=r2d2-redis-sentinel/redis:bookworm docker/example-failover.sh
#
# CARGO_FLAGS, if set, is passed to cargo (CI builds everything with `--features metrics`).
set -euo pipefail
cd "$(dirname "$0")/.."

project=r2d2sentineldemo
compose=(docker-compose -p "$project" -f docker/docker-compose.yml)
trap '"${compose[@]}" down -v --timeout 1 >/dev/null 2>&1 || true' EXIT
"${compose[@]}" up -d

# Wait until every sentinel sees both replicas and the other two sentinels.
for _ in $(seq 1 120); do
    ready=0
    for ip in 172.30.0.21 172.30.0.22 172.30.0.23; do
        info="$(redis-cli -h "$ip" -p 26379 SENTINEL MASTER mymaster 2>/dev/null | paste -sd' ' || true)"
        case "$info" in
            *"num-slaves 2 "*"num-other-sentinels 2 "*) ready=$((ready + 1)) ;;
        esac
    done
    [ "$ready" -eq 3 ] && break
    sleep 0.5
done
[ "$ready" -eq 3 ] || { echo "the sentinels did not settle" >&2; exit 1; }

export SENTINELS=redis://172.30.0.21:26379,redis://172.30.0.22:26379,redis://172.30.0.23:26379
export ADDRESS_MAP=172.30.0.10:6379=172.31.0.10:6379,172.30.0.11:6379=172.31.0.11:6379,172.30.0.12:6379=172.31.0.12:6379
export DURATION=12
read -ra flags <<<"${CARGO_FLAGS:-}"
cargo build -q "${flags[@]}" --example failover
output="$(mktemp)"
cargo run -q "${flags[@]}" --example failover >"$output" 2>&1 &
example=$!
sleep 4
echo ">>> SENTINEL FAILOVER mymaster: $(redis-cli -h 172.30.0.21 -p 26379 SENTINEL FAILOVER mymaster)"
wait "$example"
tr '\r' '\n' <"$output" | grep -v 'writes/s' || true
grep -q "errors surfaced       0" "$output"
grep -q "missing from the final master .*: 0$" "$output"
