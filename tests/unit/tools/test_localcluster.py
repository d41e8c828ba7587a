"""The real node's pure parts in tools/localcluster.py: what `down` removes from iptables."""

from tests.fixtures.cluster import localcluster

NAT_RULES = """\
-P PREROUTING ACCEPT
-P OUTPUT ACCEPT
-P POSTROUTING ACCEPT
-N DOCKER
-N KUBE-POSTROUTING
-N KUBE-SERVICES
-N KUBE-SVC-ABC
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A OUTPUT -m addrtype --dst-type LOCAL -j DOCKER
-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
-A KUBE-SERVICES -d 10.96.0.1/32 -j KUBE-SVC-ABC
"""


def test_down_removes_the_jumps_into_node_chains_then_the_chains():
    assert localcluster.node_chain_cleanup(NAT_RULES) == [
        [
            "-D",
            "PREROUTING",
            "-m",
            "comment",
            "--comment",
            "kubernetes service portals",
            "-j",
            "KUBE-SERVICES",
        ],
        [
            "-D",
            "POSTROUTING",
            "-m",
            "comment",
            "--comment",
            "kubernetes postrouting rules",
            "-j",
            "KUBE-POSTROUTING",
        ],
        ["-F", "KUBE-POSTROUTING"],
        ["-F", "KUBE-SERVICES"],
        ["-F", "KUBE-SVC-ABC"],
        ["-X", "KUBE-POSTROUTING"],
        ["-X", "KUBE-SERVICES"],
        ["-X", "KUBE-SVC-ABC"],
    ]


def test_down_leaves_other_chains_alone():
    rules = "-P INPUT ACCEPT\n-N DOCKER\n-A INPUT -j DOCKER\n"
    assert localcluster.node_chain_cleanup(rules) == []
