#!/usr/bin/env bash
# 200 buyers on 100 tickets through RQ on 2 worker nodes (2 slots each): purchases/s per mode,
# one buyer per job vs 50 buyers per job. Prints one JSON line per run; medians are up to the reader.
# Usage: benchmarks/tickets_rq.sh [runs]   (needs mplab installed; starts and stops its own Redis and nodes)
set -euo pipefail
runs=${1:-3}
state=$(mktemp -d)
export MPLAB_STATE_DIR=$state
cleanup() {
    kill -TERM "${nodes[@]}" 2>/dev/null || true
    wait "${nodes[@]}" 2>/dev/null || true
    mplab redis down >/dev/null 2>&1 || true
    rm -rf "$state"
}
trap cleanup EXIT
mplab redis up >/dev/null
nodes=()
for n in 1 2; do mplab worker --name "bench-$n" --pool 2 2>/dev/null & nodes+=($!); done
sleep 3
for mode in naive host-lock redis-lock atomic watch; do
    for per_job in 1 50; do
        for _ in $(seq "$runs"); do
            mplab tickets submit --stock 100 --buyers 200 --mode "$mode" --per-job "$per_job" --wait --json |
                python3 -c "import json,sys; r=json.load(sys.stdin); s=r['summary']; t=r['throughput'];
print(json.dumps({'mode': '$mode', 'per_job': $per_job, 'sold': s['sold'], 'oversold': s['oversold'],
 'seats_sold_twice': s['seats_sold_twice'], 'purchases_per_s': round(t['purchases_per_s'], 1)}))"
        done
    done
done
