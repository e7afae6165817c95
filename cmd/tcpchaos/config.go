package main

import (
	"fmt"
	"strings"

	"github.com/spf13/viper"
	"github.com/urfave/cli/v2"

	"github.com/tcpchaos/tcpchaos/internal/config"
)

// envKeys are the scalar config keys that TCPCHAOS_* environment variables
// may set, e.g. TCPCHAOS_INTERCEPT_QUEUE=200 or TCPCHAOS_TRACKER_MSL=5s.
var envKeys = []string{
	"intercept.mode", "intercept.ports", "intercept.hosts", "intercept.queue", "intercept.queues",
	"tracker.msl", "tracker.max-connections", "tracker.idle-timeout", "tracker.quiet-timeout",
	"seed",
}

// configFlags are the flags every config-reading command takes.
func configFlags(required bool) []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "config", Aliases: []string{"c"}, Required: required, Usage: "config `FILE` (YAML, TOML or JSON, by extension)"},
		&cli.Uint64Flag{Name: "seed", Usage: "override the config's seed with `N` (same seed, same decisions)", DefaultText: "the config's seed, 1 if it sets none"},
	}
}

// loadConfig reads the config file named by --config, overlays TCPCHAOS_*
// environment variables and flags, and validates the result.
func loadConfig(c *cli.Context, overrides map[string]string) (config.Config, error) {
	v := viper.New()
	v.SetEnvPrefix("TCPCHAOS")
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_", "-", "_"))
	for _, k := range envKeys {
		if err := v.BindEnv(k); err != nil {
			return config.Config{}, fmt.Errorf("bind environment for %s: %w", k, err)
		}
	}
	if file := c.String("config"); file != "" {
		v.SetConfigFile(file)
		if err := v.ReadInConfig(); err != nil {
			return config.Config{}, usageError{fmt.Errorf("read config %s: %w", file, err)}
		}
	}
	if c.IsSet("seed") {
		v.Set("seed", c.Uint64("seed"))
	}
	for flag, key := range overrides {
		if c.IsSet(flag) {
			v.Set(key, c.String(flag))
		}
	}
	cfg, err := config.Decode(v.AllSettings())
	if err != nil {
		where := "config"
		if file := c.String("config"); file != "" {
			where = file
		}
		return config.Config{}, usageError{fmt.Errorf("invalid %s:\n%w", where, err)}
	}
	return cfg, nil
}
