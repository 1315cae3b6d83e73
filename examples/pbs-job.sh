#!/usr/bin/env bash
#PBS -N rask-job
#PBS -l select=2:ncpus=4:mem=16gb
#PBS -l walltime=00:30:00
#PBS -j oe
#
# A rask cluster on a PBS allocation, running one Python program: `rask ssh` starts the
# scheduler on the first node of $PBS_NODEFILE and a `rask worker` on every node, the program
# connects through the scheduler file, and the cluster is stopped when it ends. The job exits
# with the program's status.
#
#   qsub examples/pbs-job.sh                      # from the directory holding my_program.py
#   qsub -v PROGRAM=$PWD/analysis.py,RASK=$HOME/bin/rask examples/pbs-job.sh
#
# Needs: rask and a Python with dask[distributed] at the same paths on every node (a shared
# file system), and password-less SSH between the nodes of the job (usual on PBS clusters).
# Settings (environment variables, all optional):
#   RASK           the rask binary [rask on PATH]
#   PROGRAM        the program to run [my_program.py in the submission directory]
#   RASK_PYTHON    the Python that runs the program, the workers and the scheduler's graph
#                  helpers [python3]
#   NCPUS          threads per node (PBS sets it from ncpus) [rask worker's default]
#   RASK_STARTUP_TIMEOUT  seconds to wait for the scheduler file [180]
#   DASHBOARD_ADDRESS     the scheduler's dashboard address [:8787]
#   RASK_SSH_PORT, RASK_SSH_PRIVATE_KEY, RASK_SSH_USERNAME, RASK_SSH_OPTIONS: how to ssh
set -euo pipefail

RASK=${RASK:-rask}
PY=${RASK_PYTHON:-python3}
export RASK_PYTHON="$PY"  # rask ssh passes it to the scheduler and the workers
cd "${PBS_O_WORKDIR:-$PWD}"
PROGRAM=${PROGRAM:-my_program.py}
JOBDIR="$PWD/rask-${PBS_JOBID:-$$}"
SCHEDULER_FILE="$JOBDIR/scheduler.json"
CLUSTER_LOG="$JOBDIR/rask-ssh.log"
STARTUP_TIMEOUT=${RASK_STARTUP_TIMEOUT:-180}

if [ -z "${PBS_NODEFILE:-}" ] || [ ! -r "$PBS_NODEFILE" ]; then
  echo "pbs-job.sh: \$PBS_NODEFILE is not set or not readable: run this script with qsub" >&2
  exit 2
fi
mkdir -p "$JOBDIR"
rm -f "$SCHEDULER_FILE"  # a stale file from an earlier run would point at a dead scheduler

worker_flags=(--nworkers 1)
if [ -n "${NCPUS:-}" ]; then worker_flags+=(--nthreads "$NCPUS"); fi

# The program finds the scheduler through the scheduler file, so any free port will do.
"$RASK" ssh --hostfile "$PBS_NODEFILE" \
  --scheduler-port 0 --scheduler-file "$SCHEDULER_FILE" \
  --dashboard-address "${DASHBOARD_ADDRESS:-:8787}" \
  --local-directory "${TMPDIR:-/tmp}" \
  "${worker_flags[@]}" >"$CLUSTER_LOG" 2>&1 &
RASK_SSH_PID=$!

stop_cluster() {
  # SIGTERM: rask ssh stops the workers, then the scheduler (SIGINT is ignored by
  # background jobs of a non-interactive shell)
  if kill -0 "$RASK_SSH_PID" 2>/dev/null; then
    kill -TERM "$RASK_SSH_PID" 2>/dev/null || true
    for _ in $(seq 1 900); do
      kill -0 "$RASK_SSH_PID" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$RASK_SSH_PID" 2>/dev/null; then
      echo "pbs-job.sh: rask ssh did not stop within 90 s; killing it" >&2
      kill -KILL "$RASK_SSH_PID" 2>/dev/null || true
    fi
  fi
  wait "$RASK_SSH_PID" 2>/dev/null || true
}
trap stop_cluster EXIT
trap 'exit 143' TERM  # walltime: PBS sends SIGTERM; the EXIT trap stops the cluster
trap 'exit 130' INT

fail() {
  echo "pbs-job.sh: $1" >&2
  echo "----- last lines of $CLUSTER_LOG -----" >&2
  tail -n 30 "$CLUSTER_LOG" >&2 || true
  exit 1
}

echo "pbs-job.sh: starting rask on $(sort -u "$PBS_NODEFILE" | wc -l) node(s); cluster log: $CLUSTER_LOG"
deadline=$((SECONDS + STARTUP_TIMEOUT))
# the file may be half-written when it first appears: wait until it parses
until ADDRESS=$("$PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))["address"])' "$SCHEDULER_FILE" 2>/dev/null); do
  kill -0 "$RASK_SSH_PID" 2>/dev/null || fail "rask ssh exited before the scheduler was up"
  [ "$SECONDS" -lt "$deadline" ] ||
    fail "the scheduler file $SCHEDULER_FILE did not appear within ${STARTUP_TIMEOUT}s (it is written on the first node: is $JOBDIR on a shared file system?)"
  sleep 0.5
done
echo "pbs-job.sh: scheduler at $ADDRESS; running $PROGRAM"

# my_program.py waits for this many workers (one per node) before it starts
export MIN_WORKERS=${MIN_WORKERS:-$(sort -u "$PBS_NODEFILE" | wc -l)}
status=0
DASK_SCHEDULER_ADDRESS="$ADDRESS" "$PY" "$PROGRAM" || status=$?
echo "pbs-job.sh: $PROGRAM exited with status $status; stopping the cluster"
if [ "$status" -ne 0 ]; then
  echo "----- last lines of $CLUSTER_LOG -----" >&2
  tail -n 30 "$CLUSTER_LOG" >&2 || true
fi
exit "$status"
