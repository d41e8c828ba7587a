#!/usr/bin/env bash
# make demo: a local redis-server, two workers, 2,000 jobs, then `jobpool status`.
# Everything it starts lives in .demo/ and is stopped on exit, also on Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
DIR=.demo
JOBS=${JOBS:-2000}
rm -rf "$DIR" && mkdir -p "$DIR"
PORT=$($BIN/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
URL="redis://127.0.0.1:$PORT/0"
PIDS=()

cleanup() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

redis-server --port "$PORT" --bind 127.0.0.1 --dir "$PWD/$DIR" --appendonly yes --save "" \
  --logfile "$PWD/$DIR/redis.log" --daemonize no &
PIDS+=($!)
for _ in $(seq 100); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.05; done
echo "redis-server on $URL (data and logs in $DIR/)"

export JOBPOOL_QUEUE_URL="$URL" JOBPOOL_NAMESPACE=demo JOBPOOL_POOL=thumbnails
for n in 1 2; do
  PYTHONPATH=scripts $BIN/jobpool worker --concurrency 8 --handler demo_handlers:checksum \
    --metrics-port 0 --worker-id "demo-worker-$n" 2>"$DIR/worker-$n.log" &
  PIDS+=($!)
done
echo "2 workers x 8 slots (logs in $DIR/worker-*.log)"

$BIN/python -c "import json; print('\n'.join(json.dumps({'image': f'img-{i:05}.png'}) for i in range($JOBS)))" \
  > "$DIR/jobs.jsonl"
$BIN/jobpool submit --file "$DIR/jobs.jsonl" > "$DIR/ids.txt"
echo "submitted $(wc -l < "$DIR/ids.txt") jobs (ids in $DIR/ids.txt)"

deadline=$((SECONDS + 300))
while :; do
  done_count=$($BIN/jobpool status --output json | $BIN/python -c \
    'import json, sys; s = json.load(sys.stdin); print(s["succeeded"] + s["deadLettered"])')
  [ -t 1 ] && printf '\rfinished %s/%s' "$done_count" "$JOBS"
  [ "$done_count" -ge "$JOBS" ] && break
  if [ $SECONDS -gt $deadline ]; then echo; echo "demo: jobs did not finish in 300s; see $DIR/" >&2; exit 1; fi
  sleep 0.3
done
[ -t 1 ] && echo
echo
$BIN/jobpool status
echo
echo "first results:"
$BIN/jobpool results | head -3
