#!/bin/sh
# Drives the e2ebench service with wrk: GET of one row, POST of a row, PATCH of one column, each
# against the unaudited service (bare), the audited one (audited) and the audited one with an
# HS256 bearer token on every request (jwt), interleaved round by round on the same machine and
# PostgreSQL. Prints one line per run (requests/s, p50, p99) and the load average before it.
#
#   internal/e2ebench/run.sh                    # 2 rounds, 15 s per run, 2 threads, 16 connections
#   ROUNDS=3 DURATION=15s internal/e2ebench/run.sh
#   DROP_INDEX=audit_logs_search_idx internal/e2ebench/run.sh   # audited without the full-text index
#   MODES="bare unstored audited" internal/e2ebench/run.sh
#                                  # also audited with every record encoded and none stored (mode
#                                  # unstored): the audit rows' cost in PostgreSQL is the difference
#   OTHER_BIN=/tmp/old/e2ebench MODES="bare audited other" internal/e2ebench/run.sh
#                                  # also an audited server built from another commit (mode other)
#   OTHER_BIN=... OTHER_DROP_INDEX= DROP_INDEX=audit_logs_search_idx MODES="bare audited other" ...
#                                  # the same build with and without the index, side by side
#
# Needs wrk (apt-get install -y wrk) and PostgreSQL (E2E_DB, default the test database).
set -eu
cd "$(dirname "$0")/../.."
ROUNDS=${ROUNDS:-2}
DURATION=${DURATION:-15s}
THREADS=${THREADS:-2}
CONNS=${CONNS:-16}
DB=${E2E_DB:-postgres://postgres@127.0.0.1:5432/test?sslmode=disable}
DROP_INDEX=${DROP_INDEX:-}
MODES=${MODES:-"bare audited jwt"}
ENDPOINTS=${ENDPOINTS:-"get post patch"}
OUT=${OUT:-$(mktemp -d)}
OTHER_BIN=${OTHER_BIN:-}
OTHER_DROP_INDEX=${OTHER_DROP_INDEX-$DROP_INDEX}
BIN=$OUT/e2ebench

command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 1; }
go build -o "$BIN" ./internal/e2ebench

LUA=$OUT/req.lua
cat > "$LUA" <<'LUA'
-- ENDPOINT (get, post, patch) and TOKEN come from the environment; ids are spread over the
-- 1,000 seeded rows so that PATCHes rarely wait for one another's row lock.
local endpoint = os.getenv("ENDPOINT")
local token = os.getenv("TOKEN") or ""
local n = 0
local headers = { ["Content-Type"] = "application/json" }
if token ~= "" then headers["Authorization"] = "Bearer " .. token end
request = function()
  n = n + 1
  local id = (n * 7919 + math.random(0, 999)) % 1000 + 1
  if endpoint == "get" then
    return wrk.format("GET", "/items/" .. id, headers)
  elseif endpoint == "post" then
    return wrk.format("POST", "/items", headers, '{"sku":"sku-new","name":"new item","qty":3,"price_cents":250}')
  end
  return wrk.format("PATCH", "/items/" .. id, headers, '{"qty":' .. n .. '}')
end
done = function(summary, latency, requests)
  io.write(string.format("RESULT rps=%.0f p50_ms=%.3f p99_ms=%.3f errors=%d non2xx=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout, summary.errors.status))
end
LUA

TOKEN_VALUE=$("$BIN" -token)
PIDS=""
cleanup() { for p in $PIDS; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT INT TERM
"$BIN" -fresh -mode bare -schema e2e_bare -addr 127.0.0.1:18081 -db "$DB" > "$OUT/bare.log" 2>&1 & PIDS="$PIDS $!"
"$BIN" -fresh -mode audited -schema e2e_audited -addr 127.0.0.1:18082 -db "$DB" -drop-index "$DROP_INDEX" > "$OUT/audited.log" 2>&1 & PIDS="$PIDS $!"
PORTS="18081 18082"
case " $MODES " in *" unstored "*)
  "$BIN" -fresh -mode unstored -schema e2e_unstored -addr 127.0.0.1:18084 -db "$DB" > "$OUT/unstored.log" 2>&1 & PIDS="$PIDS $!"
  PORTS="$PORTS 18084";;
esac
if [ -n "$OTHER_BIN" ]; then
  "$OTHER_BIN" -fresh -mode audited -schema e2e_other -addr 127.0.0.1:18083 -db "$DB" -drop-index "$OTHER_DROP_INDEX" > "$OUT/other.log" 2>&1 & PIDS="$PIDS $!"
  PORTS="$PORTS 18083"
fi
for port in $PORTS; do
  i=0
  until curl -fs "http://127.0.0.1:$port/items/1" >/dev/null 2>&1; do
    i=$((i + 1)); [ $i -lt 120 ] || { cat "$OUT"/*.log >&2; exit 1; }; sleep 0.5
  done
done

echo "# $(date -u +%FT%TZ) rounds=$ROUNDS duration=$DURATION threads=$THREADS connections=$CONNS drop_index=${DROP_INDEX:-none} other=${OTHER_BIN:-none} other_drop_index=${OTHER_DROP_INDEX:-none}"
echo "round endpoint mode rps p50_ms p99_ms errors non2xx load1"
r=1
while [ $r -le "$ROUNDS" ]; do
  for ep in $ENDPOINTS; do
    # Alternate the order of the modes from round to round.
    order=$MODES
    if [ $((r % 2)) -eq 0 ]; then order=$(echo "$MODES" | awk '{for (i = NF; i > 0; i--) printf "%s ", $i}'); fi
    for mode in $order; do
      port=18082; tok=""
      [ "$mode" = bare ] && port=18081
      [ "$mode" = other ] && port=18083
      [ "$mode" = unstored ] && port=18084
      [ "$mode" = jwt ] && tok=$TOKEN_VALUE
      load=$(cut -d' ' -f1 /proc/loadavg)
      line=$(ENDPOINT=$ep TOKEN=$tok wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" -s "$LUA" "http://127.0.0.1:$port" | grep '^RESULT')
      echo "$r $ep $mode $(echo "$line" | sed 's/RESULT //; s/[a-z0-9_]*=//g') $load"
    done
  done
  r=$((r + 1))
done
