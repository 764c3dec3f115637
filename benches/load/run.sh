#!/usr/bin/env bash
# Load recipe: requests/s and p50/p99 latency through the gateway vs. direct to the upstream.
#
#   bash benches/load/run.sh            # DURATION=15 CONNECTIONS=32 SKIP_BUILD=1 to tune
#
# Layout on a 2-core machine: the gateway alone on core 0 (one worker thread); the mock
# upstream and wrk share core 1. Everything talks over 127.0.0.1 and stops by itself.
set -euo pipefail
cd "$(dirname "$0")/../.."

DURATION=${DURATION:-15}
WARMUP=${WARMUP:-3}
CONNECTIONS=${CONNECTIONS:-32}
UP_PORT=${UP_PORT:-28000}
GW_PORT=${GW_PORT:-28080}
ADMIN_PORT=${ADMIN_PORT:-28090}
# A second gateway with its limits in Redis (REDIS_URL, default the local one).
GW2_PORT=${GW2_PORT:-28081}
ADMIN2_PORT=${ADMIN2_PORT:-28091}
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}

command -v wrk >/dev/null || { echo "wrk is required: apt-get install -y wrk" >&2; exit 1; }
command -v taskset >/dev/null || { echo "taskset is required: apt-get install -y util-linux" >&2; exit 1; }

if [ "${SKIP_BUILD:-0}" != 1 ]; then
  cargo build --release --locked --bin portcullis --example mock_upstream
fi
BIN=target/release/portcullis
UPSTREAM=target/release/examples/mock_upstream

work=$(mktemp -d)
pids=()
drop_pg() { :; }
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  drop_pg
  rm -rf "$work"
}
trap cleanup EXIT

wait_port() {
  for _ in $(seq 1 100); do
    (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listens on 127.0.0.1:$1" >&2
  exit 1
}

cat >"$work/config.toml" <<TOML
[server]
listen = "127.0.0.1:$GW_PORT"
threads = 1
[admin]
listen = "127.0.0.1:$ADMIN_PORT"
[database]
url = "sqlite://$work/bench.db"
[logging]
level = "warn"
[[providers]]
name = "upstream"
kind = "openai"
base_url = "http://127.0.0.1:$UP_PORT/v1"
api_key = "env:BENCH_UPSTREAM_KEY"
[[routes]]
model = "*"
provider = "upstream"
# The built-in "default" policy (redact everything both ways) applies to the main key; this
# empty policy switches the guardrails off for the comparison runs.
[guardrails.policies.off.request]
TOML
export BENCH_UPSTREAM_KEY=bench-upstream-key
# The same gateway with its limits shared through Redis.
sed -e "s/127.0.0.1:$GW_PORT/127.0.0.1:$GW2_PORT/" -e "s/127.0.0.1:$ADMIN_PORT/127.0.0.1:$ADMIN2_PORT/" \
  "$work/config.toml" >"$work/config-redis.toml"
cat >>"$work/config-redis.toml" <<TOML
[limits]
backend = "redis"
redis_url = "$REDIS_URL"
redis_key_prefix = "portcullis-bench-$$"
on_redis_error = "deny"
TOML

"$BIN" tenants create bench --config "$work/config.toml" >/dev/null
PORTCULLIS_KEY=$("$BIN" keys create --tenant bench --json --config "$work/config.toml" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')
export PORTCULLIS_KEY
OFF_KEY=$("$BIN" keys create --tenant bench --policy off --json --config "$work/config.toml" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')
ON_KEY=$PORTCULLIS_KEY
# Guardrails off and every kind of limit on, high enough never to refuse: the limiter's whole
# path (request GCRA, token estimate + reservation + settlement, concurrency) on every request.
LIMITED_KEY=$("$BIN" keys create --tenant bench --policy off --rpm 1000000000 --tpm 4000000000 \
  --max-concurrency 100000 --json --config "$work/config.toml" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')

# The audit trail: the keys above are of tenant "bench", whose requests are recorded with the
# default policy (metadata). The same key setup in a tenant that records nothing (audit off for
# its requests), and in one that records redacted prompts and answers.
"$BIN" tenants create quiet --logging none --config "$work/config.toml" >/dev/null
QUIET_KEY=$("$BIN" keys create --tenant quiet --policy off --json --config "$work/config.toml" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')
"$BIN" tenants create loud --logging redacted --config "$work/config.toml" >/dev/null
LOUD_KEY=$("$BIN" keys create --tenant loud --policy off --json --config "$work/config.toml" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')

# AUDIT_POSTGRES=1: a third gateway keeps everything in a throwaway database on the local
# Postgres (PG_URL), as in production. The Postgres backends serving it are pinned to core 1,
# as if the database ran on another host; the gateway's core pays only its own side.
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432}
GW3_PORT=${GW3_PORT:-28082}
ADMIN3_PORT=${ADMIN3_PORT:-28092}
if [ "${AUDIT_POSTGRES:-0}" = 1 ]; then
  command -v psql >/dev/null || { echo "AUDIT_POSTGRES=1 needs psql" >&2; exit 1; }
  pg_db="portcullis_load_$$"
  psql -q "$PG_URL/postgres" -c "CREATE DATABASE $pg_db"
  drop_pg() { psql -q "$PG_URL/postgres" -c "DROP DATABASE IF EXISTS $pg_db WITH (FORCE)" || true; }
  sed -e "s/127.0.0.1:$GW_PORT/127.0.0.1:$GW3_PORT/" -e "s/127.0.0.1:$ADMIN_PORT/127.0.0.1:$ADMIN3_PORT/" \
    -e "s|^url = \"sqlite://.*|url = \"$PG_URL/$pg_db\"|" "$work/config.toml" >"$work/config-pg.toml"
  "$BIN" tenants create quiet --logging none --config "$work/config-pg.toml" >/dev/null
  "$BIN" tenants create bench --config "$work/config-pg.toml" >/dev/null
  PG_QUIET_KEY=$("$BIN" keys create --tenant quiet --policy off --json --config "$work/config-pg.toml" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')
  PG_META_KEY=$("$BIN" keys create --tenant bench --policy off --json --config "$work/config-pg.toml" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')
fi

taskset -c 1 "$UPSTREAM" --listen "127.0.0.1:$UP_PORT" 2>"$work/upstream.log" &
pids+=($!)
taskset -c 0 "$BIN" serve --config "$work/config.toml" 2>"$work/gateway.log" &
pids+=($!)
taskset -c 0 "$BIN" serve --config "$work/config-redis.toml" 2>"$work/gateway-redis.log" &
pids+=($!)
if [ "${AUDIT_POSTGRES:-0}" = 1 ]; then
  taskset -c 0 "$BIN" serve --config "$work/config-pg.toml" 2>"$work/gateway-pg.log" &
  pids+=($!)
fi
wait_port "$UP_PORT"
wait_port "$GW_PORT"
wait_port "$GW2_PORT"

# One request of each kind first: a broken setup fails here, not as a page of wrk errors.
for stream in false true; do
  code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$GW_PORT/v1/chat/completions" \
    -H "Authorization: Bearer $PORTCULLIS_KEY" -H 'Content-Type: application/json' \
    -d "{\"model\":\"bench-model\",\"stream\":$stream,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}")
  [ "$code" = 200 ] || { echo "smoke request (stream=$stream) got HTTP $code" >&2; cat "$work/gateway.log" >&2; exit 1; }
done

results=()
run() { # name port stream [connections]
  local name=$1 port=$2 stream=$3 conns=${4:-$CONNECTIONS} out
  export BENCH_STREAM=$stream
  taskset -c 1 wrk -t1 -c"$conns" -d"${WARMUP}s" -s benches/load/chat.lua \
    "http://127.0.0.1:$port/v1/chat/completions" >/dev/null
  out=$(taskset -c 1 wrk -t1 -c"$conns" -d"${DURATION}s" --latency -s benches/load/chat.lua \
    "http://127.0.0.1:$port/v1/chat/completions")
  if grep -q "Non-2xx\|Socket errors" <<<"$out"; then
    echo "$out" >&2
    echo "run '$name' had errors" >&2
    exit 1
  fi
  local rps p50 p99
  rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
  results+=("$name $rps $p50 $p99")
}

run direct-json "$UP_PORT" false
run gateway-json "$GW_PORT" false
run direct-sse "$UP_PORT" true
run gateway-sse "$GW_PORT" true
# The same through a key whose policy turns the guardrails off: their cost is the difference.
export PORTCULLIS_KEY=$OFF_KEY
run gw-json-noguard "$GW_PORT" false
run gw-sse-noguard "$GW_PORT" true
# Limits on (guardrails off): compare with the noguard rows.
export PORTCULLIS_KEY=$LIMITED_KEY
run gw-json-limits "$GW_PORT" false
run gw-sse-limits "$GW_PORT" true
run gw-json-redis "$GW2_PORT" false
run gw-sse-redis "$GW2_PORT" true
# Audit off (tenant logging "none") and redacted, guardrails off: compare with noguard
# (audit on, "metadata").
export PORTCULLIS_KEY=$QUIET_KEY
run gw-json-noaudit "$GW_PORT" false
run gw-sse-noaudit "$GW_PORT" true
export PORTCULLIS_KEY=$LOUD_KEY
run gw-json-redacted "$GW_PORT" false
run gw-sse-redacted "$GW_PORT" true
if [ "${AUDIT_POSTGRES:-0}" = 1 ]; then
  wait_port "$GW3_PORT"
  # Warm the pool and the audit writer's connection, then pin every backend of the database.
  export PORTCULLIS_KEY=$PG_META_KEY
  taskset -c 1 wrk -t1 -c4 -d2s -s benches/load/chat.lua "http://127.0.0.1:$GW3_PORT/v1/chat/completions" >/dev/null
  for pid in $(psql -Atq "$PG_URL/postgres" -c "SELECT pid FROM pg_stat_activity WHERE datname = '$pg_db'"); do
    taskset -cp 1 "$pid" >/dev/null
  done
  export PORTCULLIS_KEY=$PG_QUIET_KEY
  run pg-json-noaudit "$GW3_PORT" false
  export PORTCULLIS_KEY=$PG_META_KEY
  run pg-json-metadata "$GW3_PORT" false
fi
export PORTCULLIS_KEY=$ON_KEY
# One connection: no queueing, so the latency difference is the hop itself.
run direct-json-c1 "$UP_PORT" false 1
run gateway-json-c1 "$GW_PORT" false 1

echo
echo "wrk -t1 -c$CONNECTIONS (-c1 for *-c1) -d${DURATION}s; gateway on core 0 (1 thread), upstream + wrk on core 1"
printf '%-16s %12s %10s %10s\n' scenario req/s p50 p99
for r in "${results[@]}"; do
  # shellcheck disable=SC2086
  printf '%-16s %12s %10s %10s\n' $r
done
python3 - "${results[@]}" <<'PY'
import sys
rows = {r.split()[0]: float(r.split()[1]) for r in sys.argv[1:]}
for kind in ("json", "sse", "json-c1"):
    print(f"gateway/direct throughput ({kind}): {rows[f'gateway-{kind}'] / rows[f'direct-{kind}']:.2f}")
for kind in ("json", "sse"):
    base = rows[f"gw-{kind}-noguard"]
    print(f"limits on/off throughput ({kind}): local {rows[f'gw-{kind}-limits'] / base:.2f}, "
          f"redis {rows[f'gw-{kind}-redis'] / base:.2f}")
if "pg-json-noaudit" in rows:
    print(f"audit on/off throughput (json, Postgres): metadata "
          f"{rows['pg-json-metadata'] / rows['pg-json-noaudit']:.2f}")
for kind in ("json", "sse"):
    off = rows[f"gw-{kind}-noaudit"]
    print(f"audit on/off throughput ({kind}): metadata {rows[f'gw-{kind}-noguard'] / off:.2f}, "
          f"redacted {rows[f'gw-{kind}-redacted'] / off:.2f}")
PY
