package main

import (
	"fmt"
	"math"
	"net/http"
	"regexp"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrapeEvery is how often the metrics column is scraped: 15 times as
// often as Prometheus's default, to make the scrapes' cost show.
const scrapeEvery = time.Second

// metricsURL is the line `run --metrics` prints before it intercepts.
var metricsURL = regexp.MustCompile(`tcpchaos: metrics at (http://\S+)`)

// scrapes is what scraping one run's metrics found.
type scrapes struct {
	n, failed int
	// verdictP50 and verdictP99 are the bucket bounds (µs) of
	// tcpchaos_verdict_seconds at the last scrape under which half and
	// 99 % of the verdicts were written; NaN when not scraped.
	verdictP50, verdictP99 float64
}

// scraper scrapes a run's metrics every scrapeEvery until stop.
type scraper struct {
	url  string
	done chan struct{}
	wg   sync.WaitGroup
	res  scrapes
}

// startScraper finds the metrics address in a run's output and scrapes it
// from now on.
func startScraper(output string) (*scraper, error) {
	m := metricsURL.FindStringSubmatch(output)
	if m == nil {
		return nil, fmt.Errorf("no metrics address in tcpchaos's output:\n%s", output)
	}
	s := &scraper{url: m[1], done: make(chan struct{}), res: scrapes{verdictP50: math.NaN(), verdictP99: math.NaN()}}
	s.wg.Go(s.loop)
	return s, nil
}

func (s *scraper) loop() {
	t := time.NewTicker(scrapeEvery)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
		}
		if err := s.scrape(); err != nil {
			s.res.failed++
		}
		s.res.n++
	}
}

// scrape reads the metrics once and keeps the verdict quantiles.
func (s *scraper) scrape() error {
	c := http.Client{Timeout: scrapeEvery}
	resp, err := c.Get(s.url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return err
	}
	mf := mfs["tcpchaos_verdict_seconds"]
	if mf == nil || len(mf.GetMetric()) != 1 {
		return fmt.Errorf("no tcpchaos_verdict_seconds in %s", s.url)
	}
	h := mf.GetMetric()[0].GetHistogram()
	bounds := map[float64]uint64{}
	for _, b := range h.GetBucket() {
		bounds[b.GetUpperBound()] = b.GetCumulativeCount()
	}
	s.res.verdictP50 = bucketQuantile(bounds, h.GetSampleCount(), 0.50) * 1e6
	s.res.verdictP99 = bucketQuantile(bounds, h.GetSampleCount(), 0.99) * 1e6
	return nil
}

// bucketQuantile returns the least bucket bound whose cumulative count
// reaches q of count (+Inf past the last bound, NaN without samples).
func bucketQuantile(cum map[float64]uint64, count uint64, q float64) float64 {
	if count == 0 {
		return math.NaN()
	}
	les := make([]float64, 0, len(cum))
	for le := range cum {
		les = append(les, le)
	}
	sort.Float64s(les)
	for _, le := range les {
		if float64(cum[le]) >= q*float64(count) {
			return le
		}
	}
	return math.Inf(1)
}

// stop ends the scrapes and returns what they found.
func (s *scraper) stop() scrapes {
	close(s.done)
	s.wg.Wait()
	return s.res
}
