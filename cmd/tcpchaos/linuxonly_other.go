//go:build !linux

package main

import (
	"fmt"
	"runtime"

	"github.com/urfave/cli/v2"
)

// The live commands need Linux's netfilter queue and network namespaces;
// elsewhere they say so, and replay and validate work as on Linux.

func runCommand() *cli.Command {
	return linuxOnly("run", "intercept live traffic and apply a config's rules")
}

func demoCommand() *cli.Command {
	return linuxOnly("demo", "run a built-in scenario in throwaway network namespaces")
}

func cleanupCommand() *cli.Command {
	return linuxOnly("cleanup", "remove iptables rules and chains left behind by a killed run")
}

func linuxOnly(name, usage string) *cli.Command {
	return &cli.Command{
		Name:            name,
		Usage:           usage + " (Linux only)",
		SkipFlagParsing: true,
		Action: func(*cli.Context) error {
			return fmt.Errorf("%s needs Linux (netfilter queue, iptables, network namespaces), not %s; replay and validate work here", name, runtime.GOOS)
		},
	}
}
