// Command tcpchaos is an inline, state-aware TCP fault injector: it follows
// every connection through its handshake and its close and drops, delays or
// duplicates exactly the control packets a test is about.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/urfave/cli/v2"
)

// Exit codes.
const (
	exitFailure = 1 // the run failed
	exitUsage   = 2 // bad flags or a bad config: nothing was installed
	exitExpect  = 3 // the run went through and an expectation failed
)

// usageError marks an error caused by bad input (flags, config) rather than
// by the run itself.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func main() {
	app := newApp()
	if err := app.Run(os.Args); err != nil {
		fmt.Fprintf(os.Stderr, "tcpchaos: %v\n", err)
		os.Exit(exitCode(err))
	}
}

// exitCode is the exit status for the error a command returned.
func exitCode(err error) int {
	var ue usageError
	var fe failedError
	switch {
	case errors.As(err, &ue):
		return exitUsage
	case errors.As(err, &fe):
		return exitExpect
	}
	return exitFailure
}

func newApp() *cli.App {
	return &cli.App{
		Name:  "tcpchaos",
		Usage: "drop, delay or duplicate exactly the TCP handshake and close packets a test is about",
		Description: "tcpchaos sits inline through NFQUEUE, follows every TCP connection through its\n" +
			"three-way handshake and four-way close, and applies rules such as \"drop the final\n" +
			"ACK of every close on port 5432, once\". See README.md for the config reference.\n\n" +
			"Exit status: 0 success (every expectation of the config's expect: section held),\n" +
			"1 the run failed, 2 bad flags or config (nothing installed), 3 an expectation failed.",
		HideHelpCommand: true,
		Commands: []*cli.Command{
			runCommand(),
			replayCommand(),
			timelineCommand(),
			ctlCommand(),
			validateCommand(),
			demoCommand(),
			cleanupCommand(),
			versionCommand(),
		},
		OnUsageError: func(_ *cli.Context, err error, _ bool) error { return usageError{err} },
		// A missing or unknown subcommand is a usage error too.
		CommandNotFound: func(c *cli.Context, name string) {
			fmt.Fprintf(os.Stderr, "tcpchaos: unknown command %q (see tcpchaos --help)\n", name)
			os.Exit(exitUsage)
		},
	}
}
