#!/usr/bin/env bash
# Portolan side by side with the Backstage peer (../shared/peers/backstage): the same generated
# catalog and the same client (bench_client.js), then the ratios of Backstage's figures to
# Portolan's; then an import of that catalog from a git repository through a location, and a
# re-sync of it unchanged.
#
# Usage: scripts/bench-backstage.sh [N] [PEER_DIR]     (N components; default 10000)
# Needs a release build (cargo build --release -p portolan), node, git and python3.
#
# Backstage's figures are the medians the peer recorded for the same N (its results/summary.json,
# in-memory SQLite where it has them, else PostgreSQL). RUN_PEER=1 runs the peer's own benchmark
# first, on a copy of it (npm ci, then its bench.sh for this N; DB=memory or DB=pg as PEER_DB
# says, default memory up to 10000 components and pg above, where Backstage's SQLite stalls).
set -euo pipefail
N=${1:-10000}
PEER=$(cd "${2:-../shared/peers/backstage}" && pwd)
RESULTS=$PEER/results
if [ "${RUN_PEER:-0}" = 1 ]; then
  copy=$(mktemp -d)
  cp -r "$PEER"/. "$copy"
  rm -rf "$copy/results" "$copy/data"
  (cd "$copy" && npm ci --no-audit --no-fund >/dev/null && \
    SIZES=$N MODES=quiet DB=${PEER_DB:-$([ "$N" -le 10000 ] && echo memory || echo pg)} INGEST_TIMEOUT_S=1800 ./bench.sh)
  RESULTS=$copy/results
fi
BIN=$(pwd)/target/release/portolan
PORT=${PORT:-7790}
work=$(mktemp -d)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

mkdir -p "$work/repo"
python3 "$PEER/gen_catalog.py" --n "$N" --seed 42 --chunk 20000 --yaml "$work/repo/all.yaml" \
  --manifest "$work/manifest.json" >/dev/null
# The portal's own admin is a user too: the client waits for one more User than the generator made.
python3 -c "import json,sys; m=json.load(open(sys.argv[1])); m['kinds']['User']+=1; json.dump(m, open(sys.argv[1],'w'))" "$work/manifest.json"

start() {
  rm -rf "$work/data"
  "$BIN" serve --data "$work/data" --listen "127.0.0.1:$PORT" --rate-limit-per-minute 0 >"$work/server.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
  T=$("$BIN" admin --data "$work/data" create-token --user admin --name bench 2>/dev/null)
}
stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""; }

echo "== Backstage's bench client (file location, then the four reads), N=$N"
start
node "$PEER/bench_client.js" --base "http://127.0.0.1:$PORT" --token "$T" --pid "$pid" \
  --yaml "$work/repo/all.yaml" --manifest "$work/manifest.json" --out "$work/client.json" >/dev/null
python3 - "$work/client.json" "$RESULTS/summary.json" "$N" <<'PY'
import json, sys
ours = json.load(open(sys.argv[1]))
n = int(sys.argv[3])
rows = [r for r in json.load(open(sys.argv[2])) if r["n_components"] == n and r["mode"] == "quiet"]
theirs = sorted(rows, key=lambda r: r["db"] != "memory")[0] if rows else None
i = ours["ingest"]
print(f"Portolan: time to queryable {i['time_to_queryable_s']} s, "
      f"ingest CPU {i['ingest_cpu_s']} s, peak RSS {ours['memory']['peak_rss_mb']} MB")
if theirs is None:
    print(f"no Backstage figures for N={n} in {sys.argv[2]}: run with RUN_PEER=1")
    sys.exit(0)
print(f"Backstage ({theirs['db']}, median of {theirs['runs']} run(s)); ratio = Backstage / Portolan, above 1 Portolan is ahead\n")
print(f"| N={n} | Portolan | Backstage | ratio |\n|---|---|---|---|")
def row(name, mine, other):
    print(f"| {name} | {mine} | {other} | {round(other / mine, 1) if mine else '-'}x |")
row("time to queryable, s", i["time_to_queryable_s"], theirs["time_to_queryable_s"])
row("peak RSS, MB", ours["memory"]["peak_rss_mb"], theirs["peak_rss_mb"])
for s in ours["scenarios"]:
    for q in ("p50", "p95"):
        row(f"{s['name']} {q}, ms", s[f"{q}_ms"], theirs[f"{s['name']}_{q}_ms"])
PY
stop

echo "== git location: first sync, then a re-sync of the unchanged repository"
git -C "$work/repo" init -q -b main
git -C "$work/repo" add -A
git -C "$work/repo" -c user.name=bench -c user.email=bench@example.com commit -qm catalog
start
P="http://127.0.0.1:$PORT/api/v1"
L=$(curl -sf -H "authorization: Bearer $T" -H 'content-type: application/json' -XPOST "$P/locations" \
  -d "{\"type\": \"git\", \"target\": \"$work/repo\", \"branch\": \"main\", \"paths\": [\"all*.yaml\"], \"intervalSeconds\": 86400}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["location"]["id"])')
for attempt in first re-sync; do
  t0=$(date +%s.%N)
  status=$(curl -sf -H "authorization: Bearer $T" -XPOST "$P/locations/$L/sync")
  t1=$(date +%s.%N)
  echo "$attempt: $(python3 -c "print(round($t1 - $t0, 2))") s  $(echo "$status" | python3 -c 'import json,sys; s=json.load(sys.stdin)["status"]; print({k: s[k] for k in ("state","created","updated","unchanged","deleted")})')"
done
echo "peak RSS: $(grep VmHWM /proc/$pid/status)"
stop
