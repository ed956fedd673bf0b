"""The sandbox's node: pod network namespaces on a bridge, containers as local processes,
probes, services (nftables DNAT) and cluster DNS."""
