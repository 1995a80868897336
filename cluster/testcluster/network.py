"""One network namespace per compute node, joined to the host by a veth pair (10.77.<i>.0/24)."""

from __future__ import annotations

from pathlib import Path

from .layout import Node
from .procs import ClusterError, run

NETNS_DIR = Path("/var/run/netns")
IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")


def netns_path(node: Node) -> Path:
    return NETNS_DIR / node.netns


def netns_exists(node: Node) -> bool:
    return netns_path(node).exists()


def netns_pids(node: Node) -> list[int]:
    """Processes living in the node's namespace (all of them started by its slurmd)."""
    if not netns_exists(node):
        return []
    done = run(["ip", "netns", "pids", node.netns], check=False, timeout_s=10)
    return [int(tok) for tok in done.stdout.split() if tok.isdigit()]


def link_exists(name: str) -> bool:
    return run(["ip", "link", "show", "dev", name], check=False, timeout_s=10).returncode == 0


def create(node: Node) -> None:
    """Namespace, veth pair, addresses, loopback and a default route via the host side."""
    ns = node.netns
    run(["ip", "netns", "add", ns])
    run(["ip", "link", "add", node.veth_host, "type", "veth", "peer", "name", node.veth_node])
    run(["ip", "link", "set", node.veth_node, "netns", ns])
    run(["ip", "addr", "add", f"{node.host_address}/24", "dev", node.veth_host])
    run(["ip", "link", "set", node.veth_host, "up"])
    in_ns = ["ip", "-n", ns]
    run([*in_ns, "addr", "add", f"{node.address}/24", "dev", node.veth_node])
    run([*in_ns, "link", "set", node.veth_node, "up"])
    run([*in_ns, "link", "set", "lo", "up"])
    run([*in_ns, "route", "add", "default", "via", node.host_address])


def delete(node: Node) -> None:
    """Remove the namespace (which takes its veth end, and so the pair, with it). Idempotent."""
    if netns_exists(node):
        run(["ip", "netns", "delete", node.netns], check=False, timeout_s=10)
    if link_exists(node.veth_host):  # a namespace still held open keeps the pair: remove our end
        run(["ip", "link", "delete", node.veth_host], check=False, timeout_s=10)


def read_ip_forward() -> str:
    return IP_FORWARD.read_text().strip()


def set_ip_forward(value: str) -> None:
    """Nodes reach each other (srun, Ray) through the host: it has to route between the veths."""
    try:
        IP_FORWARD.write_text(value + "\n")
    except OSError as exc:
        raise ClusterError(f"cannot set {IP_FORWARD} to {value}: {exc}") from exc
