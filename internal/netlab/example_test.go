package netlab_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/tcpchaos/tcpchaos/internal/netlab"
)

// A client, a router and a server in namespaces of their own (needs root;
// compiled, not run, by go test).
func Example() {
	lab := netlab.New(fmt.Sprintf("tcpchaos-demo-%d", os.Getpid()))
	defer lab.Close()         // removes the namespaces and what still runs in them
	tp, err := lab.Topology() // tcpchaos-demo-<pid>-client, -router, -server
	if err != nil {
		log.Fatal(err)
	}
	ln, err := tp.Server.Listen("tcp", "198.19.2.2:8080")
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	conn, err := tp.Client.DialContext(context.Background(), "tcp", "198.19.2.2:8080")
	if err != nil {
		log.Fatal(err)
	}
	conn.Close()
}
