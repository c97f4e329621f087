"""A Ray cluster of one head and two worker nodes on this machine, for tests/test_ray.py.

    unshare --net python tests/ray_cluster.py ADDRESS_FILE

Run in a network namespace of its own (``unshare --net``): it brings the
namespace's loopback up, so that Ray listens on 127.0.0.1 only and nothing
leaves the machine. It writes the head's address to ADDRESS_FILE once every
node is up, then holds the cluster until its standard input closes. Other
processes join the namespace with ``nsenter --net=/proc/PID/ns/net``.

The head has no CPU: every grade runs on a worker node (one CPU each).
"""

from __future__ import annotations

import fcntl
import os
import socket
import struct
import sys

_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1


def loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH22x", b"lo", 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(sock.fileno(), _SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock.fileno(), _SIOCSIFFLAGS, struct.pack("16sH22x", b"lo", flags | _IFF_UP))


def main(address_file: str) -> int:
    loopback_up()
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, connect=False,
                      head_node_args={"num_cpus": 0, "include_dashboard": False})
    for _ in range(2):
        cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    try:
        tmp = address_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(cluster.address)
        os.replace(tmp, address_file)
        sys.stdin.read()   # until the test closes it
    finally:
        cluster.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
