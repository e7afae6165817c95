//go:build linux

package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/tcpchaos/tcpchaos/internal/netlab"
	"github.com/tcpchaos/tcpchaos/nfq"
)

func cleanupCommand() *cli.Command {
	return &cli.Command{
		Name:      "cleanup",
		Usage:     "remove iptables rules and chains left behind by a killed run, and tcpchaos's bits in conntrack's connection marks",
		UsageText: "tcpchaos cleanup [--netns NAME|PATH]",
		Description: "Safe to run twice and when nothing is installed. While the rules of a killed run\n" +
			"remain, its traffic passes untouched (the queue is bypassed when nobody listens).\n" +
			"tcpchaos's bits are cleared from every conntrack entry's mark (quiet and dark\n" +
			"connections; the other bits are kept), whether or not rules were left; a failure\n" +
			"there is a warning.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "netns", Usage: "clean up inside the network namespace `NAME` or PATH"},
		},
		Action: func(c *cli.Context) error {
			if ns := c.String("netns"); ns != "" {
				exit, err := netlab.Enter(ns)
				if err != nil {
					return err
				}
				defer exit()
			}
			if err := warnMarks(c.App.ErrWriter, nfq.Cleanup()); err != nil {
				return err
			}
			fmt.Fprintln(c.App.Writer, "tcpchaos: no tcpchaos rules are installed")
			return nil
		},
	}
}
