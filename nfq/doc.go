// Package nfq is tcpchaos's live path: the iptables rules that send TCP
// packets to an NFQUEUE queue (Install), the queue reader that hands each
// packet to a Handler and carries out its verdict (Open, Queue.Run), the
// raw-socket Injector that sends the copies of duplicated packets, and
// the conntrack marks that keep blackholed connections dark in the kernel.
//
// Per packet: the reader decodes it into a reused statetrack.Segment,
// calls Handler.Handle and has the verdict carried out by the executor
// (internal/execute, shared with the offline replay): at once (accept,
// drop, or accept with copies scheduled), or when its hold ends (delay).
// The verdicts of a burst of packets (what the socket holds when the
// reader gets to it) go to the kernel in one write, as batch verdicts
// where they can. One timer goroutine per queue releases held packets and
// sends copies when due. Exactly one verdict is given per packet on every
// path: a packet that does not decode or on which the Handler panics is
// accepted.
//
// The steady-state packet path (receive, parse, decode, track, decide,
// verdict) does not allocate.
//
// The files, by job (each with its test file):
//
//	intercept.go, iptables.go   what to intercept, and the chains that queue it
//	                            (never touching the queue)
//	handler.go, options.go      the contract with the pipeline; how a Queue is opened
//	queue.go                    a Queue's socket setup and its life (Open, Run)
//	queue_read.go               the reader loop and the drain at close
//	queue_stats.go              counters, and the kernel's /proc view of a queue
//	counters.go                 what passes a full queue unseen: the NFQUEUE
//	                            rules' counters against the queues' id sequences
//	netlink.go                  the nfnetlink_queue wire format: packet messages, bind
//	verdict.go                  verdict messages and their batching
//	core.go                     the executor's live output: verdicts, copies, timer
//	inject.go                   raw-socket copies
//	dark.go, heal.go            blackholes: the kernel rules that keep a connection
//	                            dark, their counters, and heals through ctnetlink
//	ctmarks.go                  tcpchaos's connection mark bits cleared from conntrack
//	                            when the rules go and before they come
package nfq
