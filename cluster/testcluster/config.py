"""The text of every configuration file the test cluster writes (pure functions of a Layout)."""

from __future__ import annotations

import shlex

from .layout import (
    ALL_NODES,
    CLUSTER_NAME,
    DEFAULT_TIME_MIN,
    GPUS_PER_NODE,
    MAX_TIME_MIN,
    NODE_CPUS,
    NODE_MEMORY_MB,
    NODES,
    PARTITIONS,
    POWER_NODE,
    POWER_PARTITION,
    SSH_HOST_ALIAS,
    SUSPEND_TIMEOUT_S,
    Layout,
)

DB_NAME = "slurm_acct_db"
DB_USER = "slurm"


def slurm_conf(lay: Layout) -> str:
    p = lay.ports
    lines = [
        f"ClusterName={CLUSTER_NAME}",
        f"SlurmctldHost={lay.controller_hostname}({lay.controller_address})",
        f"SlurmctldPort={p.slurmctld}",
        f"SlurmdPort={p.slurmd}",
        "SlurmUser=root",
        "SlurmdUser=root",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        # slurmrestd's clients authenticate with JWTs (HS256, the key under the state directory).
        "AuthAltTypes=auth/jwt",
        f"AuthAltParameters=jwt_key={lay.jwt_key}",
        # cred_expire=5 (the minimum) lets a requeued job start again after ~7 s instead of ~120 s.
        f"AuthInfo=socket={lay.munge_socket},cred_expire=5",
        f"StateSaveLocation={lay.state / 'ctld'}",
        f"SlurmdSpoolDir={lay.state / 'slurmd'}/%n",
        f"SlurmctldPidFile={lay.run / 'slurmctld.pid'}",
        f"SlurmdPidFile={lay.run}/slurmd-%n.pid",
        f"SlurmctldLogFile={lay.slurmctld_log}",
        f"SlurmdLogFile={lay.log}/slurmd-%n.log",
        "SlurmctldDebug=info",
        "SlurmdDebug=info",
        "ProctrackType=proctrack/linuxproc",  # the cgroup default fails here without a cgroup.conf
        "TaskPlugin=task/none",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core",
        "ReturnToService=2",
        "MpiDefault=none",
        "SlurmdParameters=config_overrides",  # nodes claim more CPUs/memory than this machine has
        "SchedulerType=sched/backfill",
        "SchedulerParameters=bf_interval=1,sched_interval=1",
        "SlurmctldParameters=preempt_send_user_signal",
        "KillWait=5",
        "InactiveLimit=0",
        "MinJobAge=300",
        "PreemptType=preempt/partition_prio",
        "PreemptMode=REQUEUE",
        "GresTypes=gpu",
        "JobAcctGatherType=jobacct_gather/linux",
        "AccountingStorageType=accounting_storage/slurmdbd",
        "AccountingStorageHost=localhost",
        f"AccountingStoragePort={p.slurmdbd}",
        # With slurmdbd, this names the munge socket for talking to it (AuthInfo is not used there).
        f"AccountingStoragePass={lay.munge_socket}",
        "AccountingStorageTRES=gres/gpu",
        "JobCompType=jobcomp/filetxt",
        f"JobCompLoc={lay.jobcomp}",
        # Power saving: only POWER_NODE ever sleeps (put to sleep by `up`; idle nodes would only sleep after an hour).
        f"SuspendProgram={lay.power_program('suspend')}",
        f"ResumeProgram={lay.power_program('resume')}",
        "SuspendTime=3600",
        f"SuspendTimeout={SUSPEND_TIMEOUT_S}",
        "ResumeTimeout=120",
        f"SuspendExcNodes={','.join(n.name for n in NODES)}",
        # A failing Prolog is how a launch fails (faults.fail_next_launch): SLURM drains the node and requeues the
        # job held ("launch failed requeued held").
        f"Prolog={lay.prolog}",
    ]
    for node in ALL_NODES:
        lines.append(
            f"NodeName={node.name} NodeAddr={node.address} NodeHostname={node.name} "
            f"CPUs={NODE_CPUS} RealMemory={NODE_MEMORY_MB} Gres=gpu:{GPUS_PER_NODE} State=UNKNOWN"
        )
    node_list = ",".join(n.name for n in NODES)
    for part in PARTITIONS:
        line = (
            f"PartitionName={part.name} Nodes={node_list} Default={'YES' if part.default else 'NO'} "
            f"MaxTime={MAX_TIME_MIN} DefaultTime={DEFAULT_TIME_MIN} "
            f"PriorityTier={part.priority_tier} PreemptMode={part.preempt_mode} State=UP"
        )
        if part.grace_time_s:
            line += f" GraceTime={part.grace_time_s}"
        lines.append(line)
    lines.append(
        f"PartitionName={POWER_PARTITION.name} Nodes={POWER_NODE.name} Default=NO MaxTime={MAX_TIME_MIN} "
        f"DefaultTime={DEFAULT_TIME_MIN} PriorityTier={POWER_PARTITION.priority_tier} "
        f"PreemptMode={POWER_PARTITION.preempt_mode} State=UP"
    )
    return "\n".join(lines) + "\n"


def gres_conf(lay: Layout) -> str:
    last = GPUS_PER_NODE - 1
    return "".join(f"NodeName={n.name} Name=gpu File={lay.gpu_dir(n.name)}/fakegpu[0-{last}]\n" for n in ALL_NODES)


def prolog(lay: Layout) -> str:
    """Succeeds, except once per marker faults.fail_next_launch left: the launch that removes one (rm is atomic,
    so two nodes never take the same) fails."""
    markers = shlex.quote(str(lay.run)) + "/fail-next-launch.*"
    return f'#!/bin/sh\nfor f in {markers}; do rm "$f" 2>/dev/null && exit 1; done\nexit 0\n'


def power_program(lay: Layout, action: str, python: str, repo: str) -> str:
    """What slurmctld runs to put nodes to sleep or wake them (cluster.testcluster.power), logging to power.log."""
    return (
        "#!/bin/sh\n"
        f"export SLURM_CONF={shlex.quote(str(lay.slurm_conf))} PYTHONPATH={shlex.quote(repo)}\n"
        'export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin${PATH:+:$PATH}"\n'
        f"exec {shlex.quote(python)} -m cluster.testcluster power {action} --dir {shlex.quote(str(lay.root))} "
        f'"$@" >> {shlex.quote(str(lay.power_log))} 2>&1\n'
    )


def slurmdbd_conf(lay: Layout, db_password: str) -> str:
    p = lay.ports
    return (
        "\n".join(
            [
                "AuthType=auth/munge",
                f"AuthInfo=socket={lay.munge_socket}",
                "AuthAltTypes=auth/jwt",
                f"AuthAltParameters=jwt_key={lay.jwt_key}",
                "DbdHost=localhost",
                f"DbdPort={p.slurmdbd}",
                "SlurmUser=root",
                "DebugLevel=info",
                f"LogFile={lay.slurmdbd_log}",
                f"PidFile={lay.run / 'slurmdbd.pid'}",
                "StorageType=accounting_storage/mysql",
                "StorageHost=127.0.0.1",
                f"StoragePort={p.mysql}",
                f"StorageUser={DB_USER}",
                f"StoragePass={db_password}",
                f"StorageLoc={DB_NAME}",
            ]
        )
        + "\n"
    )


def sshd_config(lay: Layout) -> str:
    # SetEnv (OpenSSH >= 8.7) hands SLURM_CONF to every session, commands and shells alike.
    return (
        "\n".join(
            [
                f"Port {lay.ports.ssh}",
                "ListenAddress 127.0.0.1",
                f"HostKey {lay.ssh_host_key}",
                f"AuthorizedKeysFile {lay.authorized_keys}",
                f"PidFile {lay.run / 'sshd.pid'}",
                "PermitRootLogin prohibit-password",
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "UsePAM no",
                "StrictModes no",  # keys under a world-writable /tmp would be refused otherwise
                "PrintMotd no",
                "X11Forwarding no",
                f"SetEnv SLURM_CONF={lay.slurm_conf}",
                "Subsystem sftp internal-sftp",
            ]
        )
        + "\n"
    )


def ssh_config(lay: Layout) -> str:
    return (
        "\n".join(
            [
                f"Host {SSH_HOST_ALIAS}",
                "    HostName 127.0.0.1",
                f"    Port {lay.ports.ssh}",
                "    User root",
                f"    IdentityFile {lay.ssh_key}",
                "    IdentitiesOnly yes",
                f"    UserKnownHostsFile {lay.known_hosts}",
                "    StrictHostKeyChecking accept-new",
                "    BatchMode yes",
                "    LogLevel ERROR",
                "    ConnectTimeout 10",
            ]
        )
        + "\n"
    )


def env_sh(lay: Layout, python: str) -> str:
    """SLURM_CONF for the SLURM tools; ORCH_SLURM_DIR and ORCH_PYTHON for conf/clusters/slurm-local.yaml."""
    return (
        f"# Source this file to talk to the test cluster: . {shlex.quote(str(lay.env_sh))}\n"
        f"export SLURM_CONF={shlex.quote(str(lay.slurm_conf))}\n"
        f"export ORCH_SLURM_DIR={shlex.quote(str(lay.root))}\n"
        f"export ORCH_PYTHON={shlex.quote(python)}\n"
        f"export ORCH_SLURMRESTD_URL={shlex.quote(lay.rest_url)}\n"
        f"export ORCH_SLURM_JWT_FILE={shlex.quote(str(lay.jwt_token))}\n"
    )
