// What `kubeadm reset` leaves on a host, by its own account ("The reset process does not clean CNI
// configuration ... iptables rules or IPVS tables"), removed so that a reset host is as clean as a
// fresh one: the CNI configuration and state, the Kubernetes and CNI iptables chains and rules (only
// those: the host's own firewall rules stay), their ipsets, and the network interfaces CNIs make.
// Part of the reset script (host-ops.ts); runs as root; every step tolerates a missing tool.

/** Names that only Kubernetes components and CNIs give iptables chains, rules and ipsets. */
const ownedPattern = 'KUBE-|CNI-|kube-router|FLANNEL|cali-';

/** Interfaces CNIs and kube-proxy create on the host (veths go with their pods). */
const ownedLinks = ['kube-bridge', 'cni0', 'flannel.1', 'kube-ipvs0', 'kube-dummy-if', 'cilium_host', 'vxlan.calico'];

export const nodeCleanupScript = `# node cleanup after kubeadm reset
rm -rf /etc/cni/net.d/* /var/lib/cni
for t in iptables ip6tables; do
  command -v "$t-save" >/dev/null 2>&1 || continue
  rules=$("$t-save" 2>/dev/null) || continue
  printf '%s\\n' "$rules" | grep -q -E '${ownedPattern}' || continue
  printf '%s\\n' "$rules" | grep -v -E '${ownedPattern}' | "$t-restore" || echo "leftover=$t-rules"
done
if command -v ipset >/dev/null 2>&1; then
  for s in $(ipset list -n 2>/dev/null | grep -E '^(${ownedPattern})'); do ipset destroy "$s" 2>/dev/null; done
fi
for l in ${ownedLinks.join(' ')}; do ip link show "$l" >/dev/null 2>&1 && ip link delete "$l"; done
# Routes to other nodes' pod CIDRs that a routing CNI installed (kube-router marks its own proto 17).
ip route flush proto 17 2>/dev/null
# Containers kubeadm reset did not remove: a static pod the kubelet (re)created while the reset listed
# the pods (seen with etcd on a control-plane host removed by a rollout on busy cores). The kubelet
# is stopped by now, so none comes back: remove their tasks and the containers (and snapshots).
if command -v ctr >/dev/null 2>&1; then
  for c in $(ctr -n k8s.io containers ls -q 2>/dev/null); do
    ctr -n k8s.io tasks delete -f "$c" >/dev/null 2>&1
    ctr -n k8s.io containers rm "$c" >/dev/null 2>&1
  done
  [ -n "$(ctr -n k8s.io containers ls -q 2>/dev/null)" ] && echo "leftover=containers"
fi
`;
