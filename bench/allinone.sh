#!/usr/bin/env bash
# The whole system as a user runs it (issue 14): for each row a fresh all-in-one
# (`cmd/chat`, embedded NATS and FerretDB, CHAT_RATE_LIMIT=0) with GOMAXPROCS=1 pinned to
# core 0, the load tool (`cmd/chatload`) pinned to core 1; the whole process's CPU counts.
# Prints one table with the commit and the machine's load average. Loopback only; every
# run is bounded by chatload itself.
#
#   make bench                                  # every row, 12 s each
#   bench/allinone.sh post400 mid               # some rows
#   DURATION=20s OUT=/tmp/b bench/allinone.sh   # longer rows; reports (JSON) in $OUT
#
# Rows: post400, post1000 (1 subscriber: CPU per acknowledged post, embedded store),
# post400-ext, post1000-ext (the same with FerretDB in its own process, not counted),
# small (1,000 × 40/s), mid (100 × 400/s), big (2,000 × 50/s), busy (200 × 1,000/s),
# low (100 × 10/s), idle (15,000 idle sockets: KiB per socket), ingest (10,000 posts/s
# unpinned, no subscribers: post p99 and persister lag).
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
DURATION=${DURATION:-12s}
# Ports (loopback): the all-in-one's HTTP, its embedded NATS and FerretDB, the separate FerretDB.
HTTP=${HTTP_PORT:-18080} NATSP=${NATS_PORT:-14222} MONGOP=${MONGO_PORT:-17017} EXTP=${EXT_MONGO_PORT:-17018}
OUT=${OUT:-$(mktemp -d /tmp/chat-bench.XXXX)}; mkdir -p "$OUT"
ROWS=("$@"); [ ${#ROWS[@]} -eq 0 ] && ROWS=(post400 post1000 post400-ext post1000-ext small mid big busy low idle ingest)
bin=$(mktemp -d)
(cd "$top" && go build -o "$bin/chat" ./cmd/chat && go build -o "$bin/chatload" ./cmd/chatload &&
  go build -o "$bin/ferretdb" ./deploy/cmd/ferretdb) || exit 1
commit=$(cd "$top" && git describe --always --dirty)
ulimit -n 40000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
CP= FP= data=
cleanup() { kill $CP $FP 2>/dev/null; wait $CP $FP 2>/dev/null; rm -rf "$data"; CP= FP= data=; }
trap 'cleanup; rm -rf "$bin"' EXIT

flags() { case $1 in
  post400) echo "-subs 1 -rate 400 -publishers 8";;
  post1000) echo "-subs 1 -rate 1000 -publishers 16";;
  post400-ext) echo "-subs 1 -rate 400 -publishers 8";;
  post1000-ext) echo "-subs 1 -rate 1000 -publishers 16";;
  small) echo "-subs 1000 -rate 40";;
  mid) echo "-subs 100 -rate 400 -publishers 8";;
  big) echo "-subs 2000 -rate 50";;
  busy) echo "-subs 200 -rate 1000 -publishers 16";;
  low) echo "-subs 100 -rate 10";;
  idle) echo "-idle -subs 15000 -rooms 100 -procs 2 -src-ips 127.0.0.1,127.0.0.2 -settle 5s";;
  ingest) echo "-subs 0 -rate 10000 -publishers 64 -metrics http://127.0.0.1:$HTTP/metrics";;
  *) echo "unknown row $1" >&2; exit 2;;
esac; }

# start ROW: a fresh all-in-one (and, for -ext rows, FerretDB in its own process).
start() {
  data=$(mktemp -d)
  local pin="taskset -c 0" env=(GOMAXPROCS=1)
  [ "$1" = ingest ] && pin="" env=(CHAT_PENDING_INTERVAL=250ms)
  if [[ $1 == *-ext ]]; then
    taskset -c 1 "$bin/ferretdb" -addr 127.0.0.1:$EXTP -dir "$data/ferret" >"$OUT/$1-ferretdb.log" 2>&1 &
    FP=$!
    env+=(CHAT_MONGO_URI=mongodb://127.0.0.1:$EXTP/)
    for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$EXTP) 2>/dev/null && break; sleep 0.2; done
  fi
  env "${env[@]}" CHAT_DATA_DIR="$data" CHAT_RATE_LIMIT=0 CHAT_MAX_CONNECTIONS=0 CHAT_HTTP_ADDR=127.0.0.1:$HTTP \
    CHAT_EMBEDDED_NATS_ADDR=127.0.0.1:$NATSP CHAT_EMBEDDED_MONGO_ADDR=127.0.0.1:$MONGOP \
    $pin "$bin/chat" >"$OUT/$1-chat.log" 2>&1 &
  CP=$!
  for _ in $(seq 120); do curl -sf http://127.0.0.1:$HTTP/readyz >/dev/null && return; sleep 0.5; done
  echo "row $1: the all-in-one did not become ready (log: $OUT/$1-chat.log)" >&2
}

for row in "${ROWS[@]}"; do
  flags "$row" >/dev/null || exit 2
  start "$row"
  tool="taskset -c 1"; [ "$row" = ingest ] && tool=""
  $tool "$bin/chatload" -api http://127.0.0.1:$HTTP -ws ws://127.0.0.1:$HTTP/ws -server-pid $CP \
    -warmup 2s -duration "$DURATION" $(flags "$row") -json "$OUT/$row.json" >"$OUT/$row.txt" 2>&1
  cleanup
done

python3 - "$OUT" "$commit" "$(cut -d' ' -f1-3 /proc/loadavg)" "$DURATION" "${ROWS[@]}" <<'EOF'
import json, os, sys
out, commit, load, duration, rows = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:]
print(f"all-in-one, GOMAXPROCS=1 on core 0, chatload on core 1, {duration} per row; commit {commit}; load average {load} (at the end)")
print("(ingest: unpinned, both cores shared with the tool; -ext rows: FerretDB in its own process on core 1, its CPU not counted)")
print()
print("| row | flags | CPU-s per M deliveries | CPU-ms per post | e2e p50 / p99 ms | post p99 ms | other | lost / dup / ooo |")
print("|---|---|---|---|---|---|---|---|")
for row in rows:
    p = os.path.join(out, row + ".json")
    try:
        d = json.load(open(p))
    except Exception as e:
        print(f"| {row} | – | run failed ({out}/{row}.txt) | | | | | |")
        continue
    c, s, po, de = d["config"], d["server"], d["posts"], d["deliveries"]
    fl = f'{c["subs"]} × {c["rate"]}/s' if not c.get("idle") else f'{c["subs"]} idle'
    e2e = de.get("e2e") or {}
    other = ""
    if c.get("idle"):
        other = "%.2f KiB/socket (held %.2f)" % (s.get("rss_per_connection_bytes", 0) / 1024, s.get("rss_per_connection_held_bytes", 0) / 1024)
    if d.get("persister"):
        other = "%.0f posts/s acked; persister lag p99 %.0f ms" % (po["acked_per_s"], d["persister"].get("lag_p99_ms", 0))
    cpum = "%.2f" % s["cpu_seconds_per_million_deliveries"] if de.get("window") else "–"
    cpup = "%.3f" % s["cpu_seconds_per_thousand_posts"] if po.get("acked") else "–"
    lat = "%.2f / %.2f" % (e2e.get("p50_ms", 0), e2e.get("p99_ms", 0)) if e2e.get("count") else "–"
    postp99 = "%.2f" % po["latency"]["p99_ms"] if po.get("acked") else "–"
    print(f'| {row} | {fl} | {cpum} | {cpup} | {lat} | {postp99} | {other} | {de["lost"]} / {de["duplicates"]} / {de["out_of_order"]} |')
print()
print(f"reports: {out}")
EOF
