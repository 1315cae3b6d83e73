#!/usr/bin/env bash
#SBATCH --job-name=rask-job
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --cpus-per-task=4
#SBATCH --mem=16G
#SBATCH --time=00:30:00
#
# A rask cluster on a Slurm allocation, running one Python program: `rask ssh` starts the
# scheduler on the first node of $SLURM_JOB_NODELIST and a `rask worker` on every node, the
# program connects through the scheduler file, and the cluster is stopped when it ends. The
# job exits with the program's status.
#
#   sbatch examples/slurm-job.sh                  # from the directory holding my_program.py
#   PROGRAM=$PWD/analysis.py RASK=$HOME/bin/rask sbatch examples/slurm-job.sh
#
# Needs: rask and a Python with dask[distributed] at the same paths on every node (a shared
# file system), and password-less SSH into the nodes of your job (sites with pam_slurm_adopt
# allow it for the nodes you hold).
# Settings (environment variables, all optional):
#   RASK           the rask binary [rask on PATH]
#   PROGRAM        the program to run [my_program.py in the submission directory]
#   RASK_PYTHON    the Python that runs the program, the workers and the scheduler's graph
#                  helpers [python3]
#   SLURM_CPUS_PER_TASK   threads per node (Slurm sets it from --cpus-per-task)
#   RASK_STARTUP_TIMEOUT  seconds to wait for the scheduler file [180]
#   DASHBOARD_ADDRESS     the scheduler's dashboard address [:8787]
#   RASK_SSH_PORT, RASK_SSH_PRIVATE_KEY, RASK_SSH_USERNAME, RASK_SSH_OPTIONS: how to ssh
set -euo pipefail

RASK=${RASK:-rask}
PY=${RASK_PYTHON:-python3}
export RASK_PYTHON="$PY"  # rask ssh passes it to the scheduler and the workers
cd "${SLURM_SUBMIT_DIR:-$PWD}"
PROGRAM=${PROGRAM:-my_program.py}
JOBDIR="$PWD/rask-${SLURM_JOB_ID:-$$}"
SCHEDULER_FILE="$JOBDIR/scheduler.json"
HOSTFILE="$JOBDIR/hosts"
CLUSTER_LOG="$JOBDIR/rask-ssh.log"
STARTUP_TIMEOUT=${RASK_STARTUP_TIMEOUT:-180}

if [ -z "${SLURM_JOB_NODELIST:-}" ]; then
  echo "slurm-job.sh: \$SLURM_JOB_NODELIST is not set: run this script with sbatch" >&2
  exit 2
fi
mkdir -p "$JOBDIR"
rm -f "$SCHEDULER_FILE"  # a stale file from an earlier run would point at a dead scheduler

# The node list is compressed ("node[01-04],gpu7"): scontrol expands it, one host per line.
# Without scontrol (a test, or a login node without Slurm's tools) the list is split on
# commas, which is right only for lists without [ranges].
if command -v scontrol >/dev/null 2>&1; then
  scontrol show hostnames "$SLURM_JOB_NODELIST" >"$HOSTFILE"
else
  tr ',' '\n' <<<"$SLURM_JOB_NODELIST" >"$HOSTFILE"
fi

worker_flags=(--nworkers 1)
if [ -n "${SLURM_CPUS_PER_TASK:-}" ]; then worker_flags+=(--nthreads "$SLURM_CPUS_PER_TASK"); fi

# The program finds the scheduler through the scheduler file, so any free port will do.
"$RASK" ssh --hostfile "$HOSTFILE" \
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
      echo "slurm-job.sh: rask ssh did not stop within 90 s; killing it" >&2
      kill -KILL "$RASK_SSH_PID" 2>/dev/null || true
    fi
  fi
  wait "$RASK_SSH_PID" 2>/dev/null || true
}
trap stop_cluster EXIT
trap 'exit 143' TERM  # scancel or the time limit: the EXIT trap stops the cluster
trap 'exit 130' INT

fail() {
  echo "slurm-job.sh: $1" >&2
  echo "----- last lines of $CLUSTER_LOG -----" >&2
  tail -n 30 "$CLUSTER_LOG" >&2 || true
  exit 1
}

echo "slurm-job.sh: starting rask on $(sort -u "$HOSTFILE" | wc -l) node(s); cluster log: $CLUSTER_LOG"
deadline=$((SECONDS + STARTUP_TIMEOUT))
# the file may be half-written when it first appears: wait until it parses
until ADDRESS=$("$PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))["address"])' "$SCHEDULER_FILE" 2>/dev/null); do
  kill -0 "$RASK_SSH_PID" 2>/dev/null || fail "rask ssh exited before the scheduler was up"
  [ "$SECONDS" -lt "$deadline" ] ||
    fail "the scheduler file $SCHEDULER_FILE did not appear within ${STARTUP_TIMEOUT}s (it is written on the first node: is $JOBDIR on a shared file system?)"
  sleep 0.5
done
echo "slurm-job.sh: scheduler at $ADDRESS; running $PROGRAM"

# my_program.py waits for this many workers (one per node) before it starts
export MIN_WORKERS=${MIN_WORKERS:-$(sort -u "$HOSTFILE" | wc -l)}
status=0
DASK_SCHEDULER_ADDRESS="$ADDRESS" "$PY" "$PROGRAM" || status=$?
echo "slurm-job.sh: $PROGRAM exited with status $status; stopping the cluster"
if [ "$status" -ne 0 ]; then
  echo "----- last lines of $CLUSTER_LOG -----" >&2
  tail -n 30 "$CLUSTER_LOG" >&2 || true
fi
exit "$status"
