package netlab

import (
	"fmt"
	"net/netip"
)

// Topology is three namespaces, client, router and server, joined by two
// veth pairs with the default offloads left on:
//
//	client  eth0 198.18.1.2/24 fd00:1::2/64
//	   │
//	router  to-client 198.18.1.1/24 fd00:1::1/64   (forwarding v4 and v6)
//	        to-server 198.19.2.1/24 fd00:2::1/64
//	   │
//	server  eth0 198.19.2.2/24 fd00:2::2/64
//
// The client and the server have default routes (both families) through the
// router. Each topology lives in namespaces of its own, so every topology
// has these same addresses.
type Topology struct {
	Client, Router, Server *NS

	Client4, RouterClient4, RouterServer4, Server4 netip.Addr
	Client6, RouterClient6, RouterServer6, Server6 netip.Addr

	// RouterClientIf ("to-client") and RouterServerIf ("to-server") are the
	// router's interfaces: capture on both to see a packet before and after
	// the router.
	RouterClientIf, RouterServerIf string
	// HostIf ("eth0") is the client's and the server's interface.
	HostIf string
}

// Topology creates the namespaces "<prefix>-client", "<prefix>-router" and
// "<prefix>-server" and wires them as Topology describes. On error, what
// was created so far stays in the lab for Close to remove.
func (l *Lab) Topology() (*Topology, error) {
	tp := &Topology{
		Client4:       netip.MustParseAddr("198.18.1.2"),
		RouterClient4: netip.MustParseAddr("198.18.1.1"),
		RouterServer4: netip.MustParseAddr("198.19.2.1"),
		Server4:       netip.MustParseAddr("198.19.2.2"),

		Client6:       netip.MustParseAddr("fd00:1::2"),
		RouterClient6: netip.MustParseAddr("fd00:1::1"),
		RouterServer6: netip.MustParseAddr("fd00:2::1"),
		Server6:       netip.MustParseAddr("fd00:2::2"),

		RouterClientIf: "to-client",
		RouterServerIf: "to-server",
		HostIf:         "eth0",
	}
	for _, ns := range []struct {
		n    **NS
		role string
	}{{&tp.Client, "client"}, {&tp.Router, "router"}, {&tp.Server, "server"}} {
		n, err := l.Namespace(ns.role)
		if err != nil {
			return nil, fmt.Errorf("build topology: %w", err)
		}
		*ns.n = n
	}
	for _, s := range []string{"net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"} {
		if err := tp.Router.Sysctl(s, "1"); err != nil {
			return nil, fmt.Errorf("build topology: %w", err)
		}
	}
	err := tp.Router.IP(fmt.Sprintf(`link add %[1]s type veth peer name %[3]s netns %[4]s
link add %[2]s type veth peer name %[3]s netns %[5]s
addr add %[6]s/24 dev %[1]s
addr add %[7]s/64 dev %[1]s nodad
addr add %[8]s/24 dev %[2]s
addr add %[9]s/64 dev %[2]s nodad
link set %[1]s up
link set %[2]s up`,
		tp.RouterClientIf, tp.RouterServerIf, tp.HostIf, tp.Client.Name, tp.Server.Name,
		tp.RouterClient4, tp.RouterClient6, tp.RouterServer4, tp.RouterServer6))
	if err == nil {
		err = tp.host(tp.Client, tp.Client4, tp.RouterClient4, tp.Client6, tp.RouterClient6)
	}
	if err == nil {
		err = tp.host(tp.Server, tp.Server4, tp.RouterServer4, tp.Server6, tp.RouterServer6)
	}
	if err != nil {
		return nil, fmt.Errorf("build topology: %w", err)
	}
	return tp, nil
}

// host addresses an end host's interface and routes it through gw4/gw6.
func (tp *Topology) host(n *NS, a4, gw4, a6, gw6 netip.Addr) error {
	return n.IP(fmt.Sprintf(`addr add %[2]s/24 dev %[1]s
addr add %[4]s/64 dev %[1]s nodad
link set %[1]s up
route add default via %[3]s
route add ::/0 via %[5]s`, tp.HostIf, a4, gw4, a6, gw6))
}
