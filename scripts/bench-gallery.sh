#!/usr/bin/env bash
# The gallery's two figures: how long installing every template into an empty server takes (one
# apply of every `Template` document, then the same again, unchanged), and the time from starting
# `serve --demo` to every template's demo run ended in SUCCESS on the demo's runner (runs that need
# an approval are approved by a second admin; Lock deployments goes last, then is lifted).
#
# Usage: scripts/bench-gallery.sh          Needs a release build (cargo build --release -p
# portolan), curl and jq.
set -euo pipefail
BIN=$(pwd)/target/release/portolan
PORT=${PORT:-7791}
BASE=http://127.0.0.1:$PORT
work=$(mktemp -d)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
now() { date +%s.%N; }
ready() { until curl -sf "$BASE/readyz" >/dev/null; do sleep 0.05; done; }
token() { "$BIN" admin create-token --data "$1" --user "$2" --name bench 2>/dev/null | tail -1; }

# 1. Install the whole gallery into an empty server.
"$BIN" serve --data "$work/empty" --listen "127.0.0.1:$PORT" >"$work/empty.log" 2>&1 & pid=$!
ready
T=$(token "$work/empty" admin)
c() { curl -sS --fail-with-body -H "authorization: Bearer $T" -H 'content-type: application/json' "$@"; }
documents=$(c "$BASE/api/v1/gallery" | jq '[.templates[] | {document: {apiVersion: "portolan.dev/v1", kind: "Template",
  spec: {template: .identifier, backend: {type: "RUNNER", labels: ["ops"]}}}}]')
body=$(jq -n --argjson d "$documents" '{source: "gallery", documents: $d}')
for pass in first again; do
  start=$(now)
  summary=$(c -XPOST "$BASE/api/v1/apply" -d "$body" | jq -c '[.changes[].op] | group_by(.) | map({(.[0]): length}) | add')
  echo "install every template ($pass): $(printf "%.2f" "$(echo "$(now) - $start" | bc -l)") s  $summary"
done
kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""

# 2. From `serve --demo` to every template's run ended.
start=$(now)
(cd "$work" && exec "$BIN" serve --demo --data "$work/demo" --listen "127.0.0.1:$PORT" >"$work/demo.log" 2>&1) & pid=$!
ready
echo "serve --demo ready: $(printf "%.2f" "$(echo "$(now) - $start" | bc -l)") s"
T=$(token "$work/demo" admin)
c -XPOST "$BASE/api/v1/users" -d '{"identifier": "approver@bench", "role": "admin", "password": "bench-approver-1"}' >/dev/null
A=$(token "$work/demo" approver@bench)
templates=$(c "$BASE/api/v1/gallery" | jq -c '[.templates[] | select(.identifier != "lock_deployments")] + [.templates[] | select(.identifier == "lock_deployments")] | .[]')
runs=()
while read -r t; do
  action=$(echo "$t" | jq -r '.actions[0].identifier')
  request=$(echo "$t" | jq -c '{properties: (.demo.inputs // {})} + (if .demo.entity then {entity: .demo.entity} else {} end)')
  [ "$action" = lock_deployments ] && for id in "${runs[@]}"; do   # the lock would stop deploys still waiting
    until c "$BASE/api/v1/actions/runs/$id" | jq -e '.run.status | IN("SUCCESS","FAILURE","DECLINED","CANCELLED","TIMED_OUT")' >/dev/null; do sleep 0.05; done
  done
  id=$(c -XPOST "$BASE/api/v1/actions/$action/runs" -d "$request" | jq -r .run.id)
  if c "$BASE/api/v1/actions/runs/$id" | jq -e '.run.status == "WAITING_FOR_APPROVAL"' >/dev/null; then
    curl -sS --fail-with-body -XPATCH -H "authorization: Bearer $A" -H 'content-type: application/json' \
      "$BASE/api/v1/actions/runs/$id/approval" -d '{"status": "APPROVE"}' >/dev/null
  fi
  runs+=("$id")
done <<<"$templates"
succeeded=0
for id in "${runs[@]}"; do
  until status=$(c "$BASE/api/v1/actions/runs/$id" | jq -r .run.status) && [[ "$status" =~ ^(SUCCESS|FAILURE|DECLINED|CANCELLED|TIMED_OUT)$ ]]; do sleep 0.05; done
  if [ "$status" = SUCCESS ]; then succeeded=$((succeeded + 1)); else echo "run $id ended $status"; fi
done
echo "serve --demo to every template's run ended: $(printf "%.2f" "$(echo "$(now) - $start" | bc -l)") s ($succeeded of ${#runs[@]} SUCCESS)"
