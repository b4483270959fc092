#!/usr/bin/env bash
# A/B of two pusher binaries, alternating, on one all-in-one (NATS, api, persister, FerretDB):
# the pusher pinned to core 0, the all-in-one and the load tool to core 1, as in README
# "Performance". Loopback only; every run is bounded by chatload itself.
#
#   go build -o /tmp/pusher-a ./services/pusher   # at the old commit
#   go build -o /tmp/pusher-b ./services/pusher   # at the new one
#   bench/pusher-ab.sh /tmp/pusher-a /tmp/pusher-b 3 big busy mid low idle
#
# Scenarios: big (2,000 × 50/s), busy (200 × 1,000/s), mid (100 × 400/s), low (100 × 10/s),
# idle (15,000 idle sockets, RSS per socket). Reports (JSON) land in $OUT (/tmp/pusher-ab).
set -u
A=$1 B=$2 R=$3; shift 3
top=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-/tmp/pusher-ab}; mkdir -p "$OUT"
bin=$(mktemp -d)
(cd "$top" && go build -o "$bin/chat" ./cmd/chat && go build -o "$bin/chatload" ./cmd/chatload) || exit 1
data=$(mktemp -d)
CHAT_DATA_DIR=$data CHAT_RATE_LIMIT=0 CHAT_MAX_CONNECTIONS=0 CHAT_HTTP_ADDR=127.0.0.1:18080 \
  CHAT_EMBEDDED_NATS_ADDR=127.0.0.1:14222 CHAT_EMBEDDED_MONGO_ADDR=127.0.0.1:17017 \
  taskset -c 1 "$bin/chat" >"$OUT/chat.log" 2>&1 &
CP=$! PP=
trap 'kill $CP $PP 2>/dev/null; rm -rf "$bin" "$data"' EXIT
for _ in $(seq 120); do curl -sf http://127.0.0.1:18080/readyz >/dev/null && break; sleep 0.5; done
flags() { case $1 in
  big) echo "-subs 2000 -rate 50";;
  busy) echo "-subs 200 -rate 1000 -publishers 16";;
  mid) echo "-subs 100 -rate 400 -publishers 8";;
  low) echo "-subs 100 -rate 10";;
  idle) echo "-idle -subs 15000 -rooms 100 -procs 2 -src-ips 127.0.0.1,127.0.0.2 -settle 5s -duration 30s";;
  *) echo "unknown scenario $1" >&2; exit 2;;
esac; }
for r in $(seq "$R"); do
  for s in "$@"; do
    for v in A B; do
      p=$A; [ $v = B ] && p=$B
      CHAT_NATS_URL=nats://127.0.0.1:14222 CHAT_MONGO_URI=mongodb://127.0.0.1:17017/ CHAT_HTTP_ADDR=127.0.0.1:18081 \
        CHAT_MAX_CONNECTIONS=0 taskset -c 0 "$p" >"$OUT/pusher-$v.log" 2>&1 &
      PP=$!
      for _ in $(seq 120); do curl -sf http://127.0.0.1:18081/readyz >/dev/null && break; sleep 0.5; done
      taskset -c 1 "$bin/chatload" -api http://127.0.0.1:18080 -ws ws://127.0.0.1:18081/ws -server-pid $PP \
        -warmup 2s -duration 10s $(flags "$s") -room-prefix "$s$r$v" -json "$OUT/$s-$r-$v.json" >"$OUT/$s-$r-$v.txt" 2>&1
      kill $PP; wait $PP 2>/dev/null; PP=
      printf '%s round %s %s: ' "$s" "$r" "$v"
      python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); s=d["server"]; e=d["deliveries"]; print("CPU-s/M %.2f  p99 %s ms  KiB/socket %.2f  lost %s dup %s ooo %s" % (s["cpu_seconds_per_million_deliveries"], (e.get("e2e") or {}).get("p99_ms"), s.get("rss_per_connection_bytes",0)/1024, e["lost"], e["duplicates"], e["out_of_order"]))' "$OUT/$s-$r-$v.json"
    done
  done
done
