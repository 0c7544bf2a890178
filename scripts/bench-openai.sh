#!/usr/bin/env bash
# Tokens/s of the demo's generation stage (its prompts, n = 4, 80 new tokens, top_p 0.95) through the
# built-in engine and through llama-server ([generate] backend = "openai"), one after the other on
# this machine. Prints one line per engine; figures on a shared machine are indicative. The base model
# (no SFT) ends these prompts at once at temperature 1; TEMPERATURE=2 (the default here) makes it write.
#   scripts/bench-openai.sh [MAX_USERS_PER_SPLIT=17] [SERVER_SLOTS=4] [SERVER_THREADS=1] [CONCURRENCY=8]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${RLRF_BUILD_DIR:-$ROOT/build}"
USERS="${1:-17}" SLOTS="${2:-4}" THREADS="${3:-1}" CONC="${4:-8}" TEMP="${TEMPERATURE:-2.0}"
SERVER="$("$ROOT/scripts/build-llama-server.sh")"
GGUF="$ROOT/../shared/models/tinystories-656k-gguf/tinystories-656k-f32.gguf"
OUT="$(mktemp -d /tmp/rlrf-bench-openai.XXXXXX)"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
common=(--set run.rounds=0 --set sft.enabled=false --set 'knowledge.encoder="hash"' --set "run.max_users=$USERS"
  --set "generate.temperature=$TEMP" --until generate)

stats() {  # run dir -> "responses new_tokens seconds tokens/s"
  sqlite3 "$1/run.sqlite" "select json from docs where key='generate/0'" |
    python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["responses"], d["new_tokens"], round(d["seconds"],2), round(d["tokens_per_second"]))'
}

"$BUILD/rlrf" run "${common[@]}" --set "run.dir=\"$OUT/builtin\"" 2>"$OUT/builtin.log"
echo "builtin      $(stats "$OUT/builtin")"

"$SERVER" -m "$GGUF" --host 127.0.0.1 --port "$PORT" -np "$SLOTS" -t "$THREADS" -c $((512 * SLOTS)) >"$OUT/server.log" 2>&1 &
spid=$!
trap 'kill $spid 2>/dev/null || true' EXIT
until curl -sf "http://127.0.0.1:$PORT/health" >/dev/null; do sleep 0.2; done
"$BUILD/rlrf" run "${common[@]}" --set "run.dir=\"$OUT/openai\"" --set 'generate.backend="openai"' \
  --set "generate.url=\"http://127.0.0.1:$PORT\"" --set "generate.concurrency=$CONC" 2>"$OUT/openai.log"
echo "llama-server $(stats "$OUT/openai") (-np $SLOTS -t $THREADS, concurrency $CONC)"
echo "logs: $OUT"
