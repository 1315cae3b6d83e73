#!/bin/bash
# Capture raw wire messages of a stock Dask 2026.8.0 cluster for the rask-protocol golden tests.
# Adapted from /work/shared/reference/run_trace.sh (same topology and fixed ports: scheduler
# :8786 behind proxy :9786, worker i :900i behind proxy :910i), but with capture_proxy.py
# --dump-all so that every message of every connection is written raw.
#
# usage: PYTHON=/work/venv/bin/python DASK=/work/venv/bin/dask capture.sh OUT_DIR
#   OUT_DIR/raw/*.bin + OUT_DIR/raw/index.jsonl  all messages
#   OUT_DIR/golden.txt                            decoded trace (dask_proxy format)
# then: $PYTHON crates/protocol/tests/capture/pick_golden.py OUT_DIR/raw crates/protocol/tests/data
#       copies the curated set (by content, see pick_golden.py) into tests/data
set -u
R=$(cd "$(dirname "$0")" && pwd)
PY=${PYTHON:-python3}
DASK=${DASK:-dask}
OUT=$(mkdir -p "$1" && cd "$1" && pwd)
NW=2
rm -rf "$OUT/raw"; mkdir -p "$OUT/raw"
WORK=$(mktemp -d -t rask_golden.XXXX); cd "$WORK"
export DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT=10s
$DASK scheduler --host 127.0.0.1 --port 8786 --no-dashboard > sched.log 2>&1 &
SP=$!
maps="--map sched:9786:127.0.0.1:8786"
for i in $(seq 1 $NW); do maps="$maps --map worker$i:$((9100+i)):127.0.0.1:$((9000+i))"; done
$PY "$R/capture_proxy.py" --log "$OUT/golden.txt" --dump-all "$OUT/raw" $maps > proxy.log 2>&1 &
PP=$!
WPIDS=""
trap 'kill -TERM $SP $PP $WPIDS 2>/dev/null' EXIT
sleep 3
for i in $(seq 1 $NW); do
  $DASK worker tcp://127.0.0.1:9786 --no-nanny --nthreads 1 \
     --listen-address tcp://127.0.0.1:$((9000+i)) --contact-address tcp://127.0.0.1:$((9100+i)) \
     --no-dashboard --memory-limit 1GB --name w$i > worker$i.log 2>&1 &
  WPIDS="$WPIDS $!"
done
$PY - <<PYEOF
import asyncio
from distributed.core import rpc
async def main():
    async with rpc("tcp://127.0.0.1:8786") as r:
        for _ in range(200):
            if (await r.identity())["n_workers"] >= $NW: return
            await asyncio.sleep(0.1)
asyncio.run(main())
PYEOF
sleep 1
DASK_SCHED=tcp://127.0.0.1:9786 timeout 90 $PY "$R/scenario.py" > client.log 2>&1
echo "client rc=$?" >> client.log
sleep 1
for p in $WPIDS; do kill -TERM $p 2>/dev/null; done
sleep 4
kill -TERM $SP 2>/dev/null; sleep 1
kill -TERM $PP 2>/dev/null
wait 2>/dev/null
cat client.log
echo "logs in $WORK"
