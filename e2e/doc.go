// Package e2e holds tcpchaos's end-to-end tests: the built binary runs
// `tcpchaos run` in the router namespace of a netlabtest topology, real
// kernel TCP stacks in the client and server namespaces are the peers, and
// the wire (tcpdump on both router interfaces), ss and nstat are the oracle
// for what each configs/ scenario claims. The tests need root; they skip
// without it unless TCPCHAOS_REQUIRE_PRIVILEGED=1.
package e2e
