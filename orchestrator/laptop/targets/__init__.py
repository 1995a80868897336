"""Where `orch` can send a sweep: `local` (Ray on this machine), `ssh` (a login node, or this machine
as one), `rest` (slurmrestd, with `rest_job` the submit job it sends), `queue` (a login node's queue)."""
