#!/usr/bin/env bash
# make demo-cluster: the operator end to end on the local control plane. A JobPool with a
# finite batch and autoscaling scales its worker pods up, completes, scales down and is
# deleted, and its finalizer removes its Redis keys. Everything it starts lives in
# .demo-cluster/ and is stopped on exit, also on Ctrl-C.
#
# JOBPOOL_DEMO_KUBECONFIG and JOBPOOL_DEMO_QUEUE_URL run it against an existing cluster and
# redis instead of starting its own (KUBECONFIG itself is ignored: it may point at a real
# cluster); JOBPOOL_DEMO_NAMESPACE (default demo), JOBPOOL_DEMO_DIR (default .demo-cluster)
# and JOBS (default 2000) change the rest. REAL_NODE=1 (root; after `make real-node`) runs it on
# a control plane whose only node is a real one: the chart installs the operator and Redis as
# pods from the project's images, and the worker pods are real containers of the example image.
# CLUSTER=kind does the same on a kind cluster (tools/kind/cluster.sh: the one of `make kind-up`
# if it runs, left running; else one created here and deleted at the end).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.tools/bin:$PWD/.venv/bin:$PATH"
BIN=.venv/bin
DIR=${JOBPOOL_DEMO_DIR:-.demo-cluster}   # emptied at start when it is the default
NS=${JOBPOOL_DEMO_NAMESPACE:-demo}
JOBS=${JOBS:-2000}
POOL=frames
MAX_WORKERS=5
CONCURRENCY=8
STARTED=$SECONDS
PIDS=()          # started by this script, stopped in reverse order
OWN_CLUSTER=""
OWN_REDIS=""
REAL=${REAL_NODE:-}
KIND=""
OWN_KIND=""
if [ "${CLUSTER:-}" = kind ]; then KIND=1 REAL=1; fi

exec 3>&1 4>&2   # the terminal, for the teardown: a signal may arrive inside a redirected poll
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
fail() { echo "demo-cluster: $*" >&4; exit 1; }   # fd 4: stderr even inside a silenced poll
free_port() { $BIN/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

stop_pid() {  # SIGTERM, then SIGKILL after $2 seconds
  local pid=$1 grace=$2 n
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((n = 0; n < grace * 10; n++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  exec 1>&3 2>&4
  [ -t 1 ] && printf '\r\033[K'
  echo
  echo "== tearing down (everything started above)"
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do stop_pid "${PIDS[$i]}" 25; done
  [ -n "$OWN_CLUSTER" ] && $BIN/python tools/localcluster.py down --dir "$DIR/cluster" >/dev/null 2>&1
  if [ -n "$OWN_KIND" ]; then bash tools/kind/cluster.sh down >/dev/null 2>&1
  elif [ -n "$KIND" ]; then   # a cluster kept running: the demo's release and namespace go
    helm uninstall jp --namespace "$NS" --wait --timeout 120s >/dev/null 2>&1
    kubectl delete namespace "$NS" --wait=false >/dev/null 2>&1
  fi
  if [ -n "$KIND" ]; then
    if [ -n "$OWN_KIND" ]; then echo "   deleted: the kind cluster, with the chart's pods"
    else echo "   left running: the kind cluster of make kind-up (make kind-down deletes it)"; fi
  elif [ -n "$REAL" ]; then
    echo "   stopped: the control plane and the real node, with the chart's pods"
  else
    echo "   stopped: local workers, operator${OWN_CLUSTER:+, control plane}${OWN_REDIS:+, redis-server}"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Polls "$@" every 0.3 s until it succeeds; fails with $1 after $2 seconds.
wait_for() {
  local what=$1 timeout=$2 deadline=$((SECONDS + $2)); shift 2
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || fail "no $what after ${timeout}s (logs in $DIR/)"
    sleep 0.3
  done
}

# A stale demo cluster (e.g. after kill -9) is stopped before its directory is reused.
[ -f "$DIR/cluster/cluster.json" ] && $BIN/python tools/localcluster.py down --dir "$DIR/cluster" >/dev/null 2>&1
[ "$DIR" = .demo-cluster ] && rm -rf "$DIR"
mkdir -p "$DIR"
DIR_ABS=$(cd "$DIR" && pwd)

if [ -n "$KIND" ]; then step "1. Kubernetes: a kind cluster (make kind-up; its node runs kubeadm's control plane)"
else step "1. Kubernetes control plane (etcd, kube-apiserver, controller-manager, scheduler, kwok)"; fi
if [ -n "${JOBPOOL_DEMO_KUBECONFIG:-}" ]; then
  export KUBECONFIG=$JOBPOOL_DEMO_KUBECONFIG
  echo "using the cluster of JOBPOOL_DEMO_KUBECONFIG=$KUBECONFIG"
elif [ -n "$KIND" ]; then
  eval "$(bash tools/kind/cluster.sh env)"   # KUBECONFIG and DOCKER_HOST of the kind cluster
  if ! bash tools/kind/cluster.sh status >/dev/null 2>&1; then OWN_KIND=1; fi
  bash tools/kind/cluster.sh up 2>&1 | sed 's/^/   /'
else
  OWN_CLUSTER=1
  if [ -n "$REAL" ]; then
    $BIN/python tools/localcluster.py up --dir "$DIR/cluster" --nodes 0 --real-node | sed 's/^/   /'
  else
    $BIN/python tools/localcluster.py up --dir "$DIR/cluster" --nodes 3 | sed 's/^/   /'
  fi
  export KUBECONFIG=$DIR_ABS/cluster/kubeconfig
fi
kubectl get nodes

step "2. Redis (the queue)"
if [ -n "$REAL" ]; then
  echo "the chart's bundled Redis, as a pod (step 4)"
elif [ -n "${JOBPOOL_DEMO_QUEUE_URL:-}" ]; then
  URL=$JOBPOOL_DEMO_QUEUE_URL
  echo "using JOBPOOL_DEMO_QUEUE_URL=$URL"
else
  OWN_REDIS=1
  PORT=$(free_port)
  URL="redis://127.0.0.1:$PORT/0"
  redis-server --port "$PORT" --bind 127.0.0.1 --dir "$DIR_ABS" --appendonly yes --save "" \
    --logfile "$DIR_ABS/redis.log" --daemonize no &
  PIDS+=($!)
  wait_for "redis-server on port $PORT" 10 redis-cli -p "$PORT" ping
  echo "redis-server on $URL, AOF on (data and log in $DIR/)"
fi

step "3. The JobPool CRD (charts/jobpool/crds/)"
kubectl apply --server-side --force-conflicts -f charts/jobpool/crds/
# kubectl wait errors out (not waits) while a new CRD has no status.conditions yet: poll instead
established() {
  [ "$(kubectl get crd jobpools.jobpool.dev -o 'jsonpath={.status.conditions[?(@.type=="Established")].status}')" = True ]
}
wait_for "the CRD Established" 60 established

kubectl get namespace "$NS" >/dev/null 2>&1 || kubectl create namespace "$NS" >/dev/null
wait_for "default service account in namespace $NS" 30 kubectl get serviceaccount default -n "$NS"
if [ -n "$REAL" ]; then
  step "4. helm install: the operator and Redis as pods (images jobpool-operator:dev, jobpool-redis:dev)"
  helm install jp charts/jobpool --namespace "$NS" --wait --timeout 240s \
    --set image.repository=jobpool-operator --set image.tag=dev \
    --set redis.image.repository=jobpool-redis --set redis.image.tag=dev --set redis.image.digest= \
    --set redis.persistence.enabled=false --set "watchNamespaces={$NS}" | sed 's/^/   /'
  kubectl get pods -n "$NS" -o wide
  # the Redis URL of the chart's Secret, by the Service's ClusterIP (kube-proxy runs on this machine)
  URL=$(kubectl get secret jp-redis -n "$NS" -o jsonpath='{.data.url}' | base64 -d)
  URL=${URL/jp-redis.$NS.svc/$(kubectl get service jp-redis -n "$NS" -o jsonpath='{.spec.clusterIP}')}
  IMAGE=jobpool-examples:dev   # on the bundled Redis the operator gives the pool a Redis user and Secret
else
step "4. The operator: jobpool operator --namespace $NS --default-queue $URL"
METRICS_PORT=$(free_port)
jobpool operator --namespace "$NS" --default-queue "$URL" --metrics-port "$METRICS_PORT" \
  >"$DIR/operator.log" 2>&1 &
OPERATOR=$!
PIDS+=($OPERATOR)
if [ -n "${JOBPOOL_DEMO_PLOT:-}" ]; then   # record the pool's metrics for the picture (make demo-plot)
  $BIN/python scripts/demo_plot.py record --metrics-url "http://127.0.0.1:$METRICS_PORT/metrics" \
    --namespace "$NS" --pool "$POOL" --out "$DIR/metrics.csv" &
  RECORDER=$!
  PIDS+=($RECORDER)
fi
operator_leads() {
  grep -q "holding the leader lease" "$DIR/operator.log" && return
  kill -0 "$OPERATOR" 2>/dev/null || fail "the operator exited; the end of $DIR/operator.log:
$(tail -n 5 "$DIR/operator.log")"
  return 1
}
wait_for "leader lease held by the operator" 60 operator_leads
echo "running (pid $OPERATOR, log in $DIR/operator.log), holding its leader Lease in $NS"

echo "kwok makes the worker pods Ready but runs no code: one local \`jobpool worker\` per Ready pod plays its container, with the pod's JOBPOOL_* environment (logs in $DIR/worker-*.log)"
$BIN/python scripts/demo_cluster_pods.py --namespace "$NS" --pool "$POOL" --log-dir "$DIR" &
PIDS+=($!)
IMAGE=registry.example/jobpool-examples:0.1
fi

step "5. Apply a JobPool: $JOBS jobs (spec.jobs.range), autoscaling 0..$MAX_WORKERS pods x $CONCURRENCY slots"
MANIFEST=$(cat <<EOF
apiVersion: jobpool.dev/v1alpha1
kind: JobPool
metadata:
  name: $POOL
spec:
  concurrency: $CONCURRENCY
  worker:
    image: $IMAGE
    handler: tasks:render_frame
  jobs:
    range: {start: 0, count: $JOBS}
  retry: {maxAttempts: 3, backoffSeconds: 1}
  drainSeconds: 10
  autoscaling:
    enabled: true
    minWorkers: 0
    maxWorkers: $MAX_WORKERS
    targetBacklogPerWorker: 40
    scaleDownDelaySeconds: 3
EOF
)
echo "$MANIFEST" | sed 's/^/   /'
echo "$MANIFEST" | kubectl apply -n "$NS" -f -
jp_field() { kubectl get jobpool "$POOL" -n "$NS" -o "jsonpath=$1" 2>/dev/null; }
has_status() { [ -n "$(jp_field '{.status.desiredReplicas}')" ]; }
wait_for "status on the JobPool" 30 has_status
kubectl get jp -n "$NS"

step "6. Scale-up: the autoscaler turns the backlog into worker pods"
# A small batch may already be scaling down by the time all pods were seen: Complete ends the wait too.
scaled_up() {
  local ready_complete
  ready_complete=$(jp_field '{.status.readyReplicas}|{.status.conditions[?(@.type=="Complete")].status}')
  [ "${ready_complete%%|*}" = "$MAX_WORKERS" ] || [ "${ready_complete#*|}" = True ]
}
wait_for "$MAX_WORKERS ready worker pods" 60 scaled_up
kubectl get deployment,pods -n "$NS" -l "jobpool.dev/pool=$POOL" -o wide

step "7. Progress (from the JobPool's status)"
deadline=$((SECONDS + 300)) last_line=0
while :; do
  IFS='|' read -r ok dead waiting inflight ready saturation complete < <(jp_field \
    '{.status.jobs.succeeded}|{.status.jobs.deadLettered}|{.status.queue.waiting}|{.status.queue.inFlight}|{.status.readyReplicas}|{.status.saturation}|{.status.conditions[?(@.type=="Complete")].status}{"\n"}') || true
  line=$(printf 'succeeded %5s/%s  dead-lettered %s  waiting %5s  in flight %3s  pods ready %s  saturation %s' \
    "${ok:-0}" "$JOBS" "${dead:-0}" "${waiting:-0}" "${inflight:-0}" "${ready:-0}" "${saturation:-0}")
  if [ -t 1 ]; then printf '\r\033[K%s' "$line"
  elif [ $SECONDS -ge $last_line ] || [ "$complete" = True ]; then echo "$line"; last_line=$((SECONDS + 2)); fi
  [ "$complete" = True ] && break
  [ $SECONDS -lt $deadline ] || fail "the JobPool did not become Complete in 300s (logs in $DIR/)"
  sleep 0.5
done
[ -t 1 ] && echo
[ "${dead:-0}" = 0 ] || echo "warning: $dead jobs were dead-lettered (jobpool dlq list $POOL; worker logs in $DIR/)"
echo "Complete=True: $(jp_field '{.status.conditions[?(@.type=="Complete")].message}')"
kubectl get jp -n "$NS"
echo
jobpool status "$POOL" --queue "$URL" --namespace "$NS"

step "8. Scale-down: no backlog left, the pool goes back to minWorkers=0"
pods=-1
deadline=$((SECONDS + 120))
while :; do
  now=$(kubectl get pods -n "$NS" -l "jobpool.dev/pool=$POOL" --no-headers 2>/dev/null | wc -l)
  [ "$now" != "$pods" ] && echo "worker pods: $now" && pods=$now
  [ "$now" = 0 ] && [ ! -s "$DIR/local-workers" ] &&
    [ "$(kubectl get deployment "$POOL-workers" -n "$NS" -o 'jsonpath={.spec.replicas}')" = 0 ] && break
  [ $SECONDS -lt $deadline ] || fail "the pool did not scale down to 0 pods in 120s (logs in $DIR/)"
  sleep 0.3
done
kubectl get jp -n "$NS"
kubectl get deployment -n "$NS" -l "jobpool.dev/pool=$POOL"
if [ -n "${RECORDER:-}" ]; then
  sleep 2   # a few samples at rest after the scale-down
  stop_pid "$RECORDER" 5
  $BIN/python scripts/demo_plot.py draw "$DIR/metrics.csv" "$JOBPOOL_DEMO_PLOT"
  echo "the pool's metrics over time: $JOBPOOL_DEMO_PLOT ($(($(wc -l <"$DIR/metrics.csv") - 1)) samples)"
fi

step "9. Delete the JobPool: its finalizer removes the pool's Redis keys"
count_keys() {  # with redis-py, as jobpool connects (redis-cli -u answers WRONGPASS to the chart's user-less URL)
  $BIN/python -c 'import redis, sys; print(sum(1 for _ in redis.Redis.from_url(sys.argv[1]).scan_iter(match=sys.argv[2])))' \
    "$URL" "{jobpool:$NS/$POOL}*"
}
echo "Redis keys of the pool before: $(count_keys)"
kubectl delete jobpool "$POOL" -n "$NS" --timeout=60s
left=$(count_keys)
echo "Redis keys of the pool after:  $left"
[ "$left" = 0 ] || fail "$left Redis keys of the pool are left after the delete"
kubectl get jobpools -n "$NS"
echo "(deployment/$POOL-workers, owned by the JobPool, goes with it by garbage collection)"

echo
echo "demo-cluster finished in $((SECONDS - STARTED))s"
[ "${ok:-0}" = "$JOBS" ] || fail "only ${ok:-0} of $JOBS jobs succeeded"
