package main

import (
	"errors"

	"github.com/urfave/cli/v2"
)

func demoCommand() *cli.Command {
	return &cli.Command{
		Name:  "demo",
		Usage: "run a built-in scenario in throwaway network namespaces (needs root)",
		Action: func(c *cli.Context) error {
			return errors.New("demo: not built yet")
		},
	}
}
