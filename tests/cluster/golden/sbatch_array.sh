#!/bin/bash

# Parameters
#SBATCH --account=orch
#SBATCH --array=0-3%4
#SBATCH --comment='orch-sweep=avae-tiny-20261123-120000-abcd orch-shards=4'
#SBATCH --cpus-per-task=6
#SBATCH --error=/scratch/orch/sweeps/avae-tiny-20261123-120000-abcd/submitit/%A_%a/%A_%a_0_log.err
#SBATCH --gres=gpu:a100:2
#SBATCH --hold
#SBATCH --job-name=orch.avae-tiny-20261123-120000-abcd
#SBATCH --mem=3072M
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --open-mode=append
#SBATCH --output=/scratch/orch/sweeps/avae-tiny-20261123-120000-abcd/submitit/%A_%a/%A_%a_0_log.out
#SBATCH --partition=low
#SBATCH --qos=normal
#SBATCH --requeue
#SBATCH --signal=USR2@90
#SBATCH --time=45
#SBATCH --wckey=submitit

# setup
module load cuda/12.4
export SLURM_CONF=/etc/slurm/test.conf
export PYTHONPATH=/scratch/orch/sweeps/avae-tiny-20261123-120000-abcd/code${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1
export ORCH_STEP_STARTED=/scratch/orch/sweeps/avae-tiny-20261123-120000-abcd/submitit/step-started.${SLURM_JOB_ID}.${SLURM_RESTART_COUNT:-0}
export ORCH_REQUEUE_REQUEST=/scratch/orch/sweeps/avae-tiny-20261123-120000-abcd/submitit/requeue.${SLURM_JOB_ID}.${SLURM_RESTART_COUNT:-0}

# command
export SUBMITIT_EXECUTOR=slurm
srun --unbuffered --output /scratch/orch/sweeps/avae-tiny-20261123-120000-abcd/submitit/%A_%a/%A_%a_%t_log.out --error /scratch/orch/sweeps/avae-tiny-20261123-120000-abcd/submitit/%A_%a/%A_%a_%t_log.err python -u -m submitit.core._submit FOLDER


# teardown
status=$?
if [ -e "$ORCH_REQUEUE_REQUEST" ]; then
    echo "orch: the job step asked for a requeue (no scontrol where it ran): requeueing job $SLURM_JOB_ID" >&2
    scontrol requeue "$SLURM_JOB_ID"
fi
if [ "$status" -ne 0 ] && [ ! -e "$ORCH_STEP_STARTED" ] && [ "${SLURM_RESTART_COUNT:-0}" -lt 5 ]; then
    echo "orch: the job step never started (exit $status): requeueing job $SLURM_JOB_ID" >&2
    scontrol requeue "$SLURM_JOB_ID"
fi
exit "$status"