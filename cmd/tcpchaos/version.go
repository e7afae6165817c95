package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/urfave/cli/v2"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3";
// otherwise the module version or VCS revision from the build info is shown.
var version = ""

func versionCommand() *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "print the version",
		Action: func(c *cli.Context) error {
			fmt.Fprintln(c.App.Writer, "tcpchaos", buildVersion())
			return nil
		},
	}
}

// buildVersion is tcpchaos's version and the Go version it was built with.
func buildVersion() string {
	if version != "" {
		return version
	}
	return fmt.Sprintf("%s (%s)", moduleVersion(), runtime.Version())
}

// moduleVersion is tcpchaos's version alone: -X main.version, or the
// module version and VCS revision from the build info.
func moduleVersion() string {
	if version != "" {
		return version
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "(unknown)"
	}
	v := info.Main.Version
	for _, s := range info.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			v += " " + s.Value[:12]
		}
	}
	return v
}
