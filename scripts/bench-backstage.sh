#!/usr/bin/env bash
# Portolan on the Backstage peer's benchmark (../shared/peers/backstage): the same generated
# catalog and the same client (bench_client.js), then an import of that catalog from a git
# repository through a location, and a re-sync of it unchanged.
#
# Usage: scripts/bench-backstage.sh [N] [PEER_DIR]     (N components; default 10000)
# Needs a release build (cargo build --release -p portolan), node, git and python3.
set -euo pipefail
N=${1:-10000}
PEER=$(cd "${2:-../shared/peers/backstage}" && pwd)
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
python3 - "$work/client.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
i = r["ingest"]
print(f"time to queryable: {i['time_to_queryable_s']} s, ingest CPU {i['ingest_cpu_s']} s, peak RSS {r['memory']['peak_rss_mb']} MB")
for s in r.get("scenarios", []):
    print(json.dumps(s)[:400])
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
