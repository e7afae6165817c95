// Command reference is the naive queue-everything program the benchmark
// suite compares tcpchaos with: it binds one NFQUEUE queue with
// go-nfqueue's defaults (whole packets copied, the kernel's queue length),
// and accepts every packet at once with one SetVerdict each. It installs no
// iptables rules: the suite points traffic at its queue. It runs until
// SIGINT or SIGTERM.
//
//	reference -queue 200
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"

	nfqueue "github.com/florianl/go-nfqueue/v2"
	"github.com/mdlayher/netlink"
)

func main() {
	queue := flag.Uint("queue", 200, "NFQUEUE `number` to read")
	flag.Parse()
	if err := run(uint16(*queue)); err != nil {
		fmt.Fprintln(os.Stderr, "reference:", err)
		os.Exit(1)
	}
}

func run(queue uint16) error {
	nf, err := nfqueue.Open(&nfqueue.Config{
		NfQueue:      queue,
		MaxPacketLen: 0xFFFF,
		Copymode:     nfqueue.NfQnlCopyPacket,
	})
	if err != nil {
		return fmt.Errorf("open queue %d: %w", queue, err)
	}
	defer nf.Close()
	if err := nf.SetOption(netlink.NoENOBUFS, true); err != nil {
		return fmt.Errorf("set NETLINK_NO_ENOBUFS: %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var verdictErrs, readErrs atomic.Uint64
	accept := func(a nfqueue.Attribute) int {
		if err := nf.SetVerdict(*a.PacketID, nfqueue.NfAccept); err != nil {
			verdictErrs.Add(1)
		}
		return 0
	}
	keepReading := func(error) int {
		readErrs.Add(1)
		return 0
	}
	if err := nf.RegisterWithErrorFunc(ctx, accept, keepReading); err != nil {
		return fmt.Errorf("register on queue %d: %w", queue, err)
	}
	fmt.Fprintf(os.Stderr, "reference: intercepting on queue %d\n", queue)
	<-ctx.Done()
	fmt.Fprintf(os.Stderr, "reference: %d verdict errors, %d read errors\n", verdictErrs.Load(), readErrs.Load())
	return nil
}
