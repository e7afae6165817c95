package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/tcpchaos/tcpchaos/rules"
)

func validateCommand() *cli.Command {
	return &cli.Command{
		Name:      "validate",
		Usage:     "check a config file and print what it would do",
		UsageText: "tcpchaos validate -c FILE",
		Flags:     configFlags(true),
		Action: func(c *cli.Context) error {
			cfg, err := loadConfig(c, nil)
			if err != nil {
				return err
			}
			w := c.App.Writer
			fmt.Fprintf(w, "%s: ok\n", c.String("config"))
			fmt.Fprintf(w, "intercept: mode %s, queue %d", cfg.Intercept.Mode, cfg.Intercept.Queue)
			if cfg.Intercept.Queues > 1 {
				fmt.Fprintf(w, "-%d", cfg.Intercept.LastQueue())
			}
			if cfg.Intercept.QueueLength > 0 {
				fmt.Fprintf(w, " (length %d)", cfg.Intercept.QueueLength)
			}
			fmt.Fprintf(w, ", ports %s, hosts %s\n", listOrAny(cfg.Intercept.Ports), listOrAny(cfg.Intercept.Hosts))
			fmt.Fprintf(w, "tracker: msl %s (TIME_WAIT %s), max-connections %d, idle-timeout %s, quiet-timeout %s\n",
				cfg.Tracker.MSL, 2*cfg.Tracker.MSL, cfg.Tracker.MaxConnections, cfg.Tracker.IdleTimeout, cfg.Tracker.QuietTimeout)
			fmt.Fprintf(w, "seed: %d\n", cfg.Seed)
			for i, r := range cfg.Rules {
				fmt.Fprintf(w, "rule %d %q: %s\n", i+1, r.Name, describeRule(r))
			}
			for i, x := range cfg.Expect {
				fmt.Fprintf(w, "expect %d %q: %s\n", i+1, x.Name, x.Check)
			}
			for _, warning := range rules.Warnings(cfg.Rules) {
				fmt.Fprintf(w, "warning: %s\n", warning)
			}
			return nil
		},
	}
}

func listOrAny[T any](xs []T) string {
	if len(xs) == 0 {
		return "any"
	}
	return fmt.Sprint(xs)
}
