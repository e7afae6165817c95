// Package config decodes tcpchaos's configuration tree (files and
// environment, as cmd/tcpchaos reads them with viper) into plain, validated
// values of the packages that own them: rules.Rule, nfq.Intercept and
// statetrack.Config and expect.Expectation. It knows nothing of files or flags; Decode refuses bad
// input with the key path and the reason before anything is installed.
package config

import (
	"github.com/tcpchaos/tcpchaos/internal/expect"
	"github.com/tcpchaos/tcpchaos/nfq"
	"github.com/tcpchaos/tcpchaos/rules"
	"github.com/tcpchaos/tcpchaos/statetrack"
)

// DefaultSeed seeds a run whose config gives no seed.
const DefaultSeed = 1

// Config is a whole, validated tcpchaos configuration.
type Config struct {
	Intercept nfq.Intercept
	Tracker   statetrack.Config
	// Seed seeds every random choice (probability, jitter): the same seed
	// and the same traffic give the same decisions. Default DefaultSeed.
	Seed uint64
	// Rules are tried in order; the first rule that matches decides.
	Rules []rules.Rule
	// Expect are the checks evaluated when the run ends, in order.
	Expect []expect.Expectation
}
