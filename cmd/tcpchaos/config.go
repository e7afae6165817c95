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
	return newConfigSource(c, overrides).load(c.String("config"))
}

// configSource is what overlays a config file: the flags given, fixed when
// the command starts, and the environment. A reload reads the file again
// through the same source.
type configSource struct {
	// set are the config keys that flags set, with their values.
	set map[string]any
}

// newConfigSource takes the flags of c that override config keys:
// --seed, and each flag of overrides (flag name to config key).
func newConfigSource(c *cli.Context, overrides map[string]string) configSource {
	s := configSource{set: map[string]any{}}
	if c.IsSet("seed") {
		s.set["seed"] = c.Uint64("seed")
	}
	for flag, key := range overrides {
		if c.IsSet(flag) {
			s.set[key] = c.String(flag)
		}
	}
	return s
}

// load reads file ("" for none), overlays the environment and the flags,
// and validates the result.
func (s configSource) load(file string) (config.Config, error) {
	v := viper.New()
	v.SetEnvPrefix("TCPCHAOS")
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_", "-", "_"))
	for _, k := range envKeys {
		if err := v.BindEnv(k); err != nil {
			return config.Config{}, fmt.Errorf("bind environment for %s: %w", k, err)
		}
	}
	if file != "" {
		v.SetConfigFile(file)
		if err := v.ReadInConfig(); err != nil {
			return config.Config{}, usageError{fmt.Errorf("read config %s: %w", file, err)}
		}
	}
	for key, value := range s.set {
		v.Set(key, value)
	}
	cfg, err := config.Decode(v.AllSettings())
	if err != nil {
		where := "config"
		if file != "" {
			where = file
		}
		return config.Config{}, usageError{fmt.Errorf("invalid %s:\n%w", where, err)}
	}
	return cfg, nil
}
