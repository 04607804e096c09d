#!/usr/bin/env bash
# Starts a coordinator and three nodes on loopback, shows what they print for a few
# seconds, then stops them all. Needs only a built bully-node (cargo build --release).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/release/bully-node
[ -x "$bin" ] || bin=target/debug/bully-node
[ -x "$bin" ] || { echo "build first: cargo build --release" >&2; exit 1; }

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

port=$((23600 + RANDOM % 1000))
"$bin" gcd --listen "127.0.0.1:$port" & pids+=($!)
# Wait (bounded) until the coordinator accepts connections.
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
for id in "40 4000001" "200 4000002" "120 4000003"; do
  set -- $id
  "$bin" --gcd "127.0.0.1:$port" --days "$1" --su-id "$2" --listen 127.0.0.1:0 & pids+=($!)
  sleep 0.3
done
sleep "${DURATION:-2}"
