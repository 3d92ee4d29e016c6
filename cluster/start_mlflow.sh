#!/usr/bin/env bash
# Start the cluster's MLflow tracking server on the head node, in the background (the cluster YAMLs call
# this before `ray start --head`; tests/test_cluster_jobs.py calls it on 127.0.0.1).
#
# Trials on every node log to it over HTTP, artifacts included: the server proxies them
# (--artifacts-destination), so worker nodes need no bucket credentials and no shared disk for MLflow.
#
#   GENLAB_MLFLOW_HOST       address to bind: default the node's private IP (never 0.0.0.0: keep the
#                            port closed to the internet; reach it from a laptop through an SSH tunnel)
#   GENLAB_MLFLOW_PORT       default 5000
#   GENLAB_MLFLOW_BACKEND    backend store: default sqlite:///$GENLAB_MLFLOW_DIR/mlflow.db; a database URI
#                            (postgresql://..., mysql://...) keeps runs when the cluster is torn down
#   GENLAB_MLFLOW_ARTIFACTS  artifact store: default $GENLAB_MLFLOW_DIR/artifacts; s3://bucket/prefix or
#                            gs://bucket/prefix (credentials from the instance role / service account)
#   GENLAB_MLFLOW_DIR        default ~/genlab-mlflow: server.log, server.pid and the default stores
#
# Prints the tracking URI on its last line. Idempotent: a server already running from this directory is kept.
set -euo pipefail

dir="${GENLAB_MLFLOW_DIR:-$HOME/genlab-mlflow}"
host="${GENLAB_MLFLOW_HOST:-$(hostname -I 2>/dev/null | awk '{print $1}')}"
host="${host:-127.0.0.1}"
port="${GENLAB_MLFLOW_PORT:-5000}"
backend="${GENLAB_MLFLOW_BACKEND:-sqlite:///$dir/mlflow.db}"
artifacts="${GENLAB_MLFLOW_ARTIFACTS:-$dir/artifacts}"
mlflow="${MLFLOW_BIN:-mlflow}"

if [[ "$host" == "0.0.0.0" || "$host" == "::" ]]; then
  echo "start_mlflow.sh: refusing to bind MLflow to all interfaces ($host); use the private IP or 127.0.0.1" >&2
  exit 2
fi

mkdir -p "$dir"
if [[ -f "$dir/server.pid" ]] && kill -0 "$(cat "$dir/server.pid")" 2>/dev/null; then
  echo "MLflow already running (pid $(cat "$dir/server.pid"))" >&2
else
  nohup "$mlflow" server --host "$host" --port "$port" --workers 1 \
    --backend-store-uri "$backend" --artifacts-destination "$artifacts" \
    >"$dir/server.log" 2>&1 &
  echo $! >"$dir/server.pid"
fi

for _ in $(seq 1 120); do  # the first start creates the database: up to a minute on a small node
  if curl -sf "http://$host:$port/health" >/dev/null 2>&1; then
    echo "http://$host:$port"
    exit 0
  fi
  if ! kill -0 "$(cat "$dir/server.pid")" 2>/dev/null; then
    echo "start_mlflow.sh: MLflow server exited; see $dir/server.log:" >&2
    tail -n 20 "$dir/server.log" >&2
    exit 1
  fi
  sleep 0.5
done
echo "start_mlflow.sh: MLflow server not answering on http://$host:$port/health after 60 s; see $dir/server.log" >&2
exit 1
