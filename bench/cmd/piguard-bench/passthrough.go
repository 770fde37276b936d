package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"time"

	"github.com/caddy-pi-guard/caddy-pi-guard/bench/loadgen"
)

// passthrough measures requests that are not payment routes through two Caddy
// sites in front of the same upstream: one with pi_guard + reverse_proxy
// (guard) and one with reverse_proxy alone (plain). The two are run in
// alternating rounds (guard, plain, then plain, guard, ...) after a warm-up,
// so that drift in the machine's speed affects both alike.
func passthrough(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("passthrough", flag.ContinueOnError)
	guardURL := fs.String("guard", "http://127.0.0.1:18401", "base URL of the site with pi_guard + reverse_proxy")
	plainURL := fs.String("plain", "http://127.0.0.1:18402", "base URL of the site with reverse_proxy alone")
	path := fs.String("path", "/hello", "request path (not a payment route)")
	conns := fs.Int("conns", 32, "concurrent keep-alive connections")
	rounds := fs.Int("rounds", 20, "rounds per configuration")
	round := fs.Duration("round", time.Second, "length of one round")
	warmup := fs.Duration("warmup", time.Second, "warm-up per configuration before the rounds")
	pid := fs.Int("pid", 0, "Caddy's process id: its CPU time per request (from /proc) is measured per configuration")
	summaryPath := fs.String("summary", "", "write each configuration's figures as JSON to this file, for the beforeafter command")
	if err := fs.Parse(args); err != nil {
		return err
	}

	type config struct {
		name   string
		url    string
		client *http.Client
		total  loadgen.Result
		rates  []float64
		cpu    time.Duration // Caddy's CPU time over this configuration's rounds
	}
	cfgs := []*config{
		{name: "pi_guard + reverse_proxy", url: *guardURL + *path, client: loadgen.NewClient(*conns)},
		{name: "reverse_proxy alone", url: *plainURL + *path, client: loadgen.NewClient(*conns)},
	}
	run := func(c *config, d time.Duration) *loadgen.Result {
		return loadgen.Run(ctx, *conns, d, func(ctx context.Context, _ int) error {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url, nil)
			if err != nil {
				return err
			}
			req.Header.Set("Accept", "*/*")
			resp, err := c.client.Do(req)
			if err != nil {
				return err
			}
			drain(resp)
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("GET %s: %s", c.url, resp.Status)
			}
			return nil
		})
	}

	for _, c := range cfgs {
		if res := run(c, *warmup); res.Ops == 0 {
			return fmt.Errorf("warm-up of %s: no request succeeded: %v", c.name, res.FirstErr)
		}
	}
	guard, plain := cfgs[0], cfgs[1]
	var ratios []float64
	for i := range *rounds {
		order := []*config{guard, plain}
		if i%2 == 1 {
			order = []*config{plain, guard}
		}
		for _, c := range order {
			var before time.Duration
			if *pid != 0 {
				before, _ = procCPU(*pid)
			}
			res := run(c, *round)
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if *pid != 0 {
				after, _ := procCPU(*pid)
				c.cpu += after - before
			}
			c.rates = append(c.rates, res.Rate())
			c.total.Ops += res.Ops
			c.total.Errors += res.Errors
			c.total.Elapsed += res.Elapsed
			c.total.Lat.Merge(&res.Lat)
			if c.total.FirstErr == nil {
				c.total.FirstErr = res.FirstErr
			}
		}
		ratios = append(ratios, guard.rates[i]/plain.rates[i])
	}

	fmt.Fprintf(out, "### Passthrough (GET %s, not a payment route)\n\n", *path)
	fmt.Fprintf(out, "%d keep-alive connections, %d alternating rounds of %s per configuration after a %s warm-up each; same Caddy process, same upstream.\n\n",
		*conns, *rounds, *round, *warmup)
	var rows [][]string
	for _, c := range cfgs {
		row := []string{
			c.name,
			fmt.Sprint(c.total.Ops),
			fmt.Sprint(c.total.Errors),
			fmt.Sprintf("%.0f", c.total.Rate()),
			fmt.Sprintf("%.0f–%.0f", slices.Min(c.rates), slices.Max(c.rates)),
			loadgen.Ms(c.total.Lat.Quantile(0.50)),
			loadgen.Ms(c.total.Lat.Quantile(0.99)),
		}
		if *pid != 0 {
			row = append(row, cpuPerRequest(c.cpu, c.total.Ops))
		}
		rows = append(rows, row)
	}
	header := []string{"configuration", "requests", "errors", "req/s", "req/s per round", "p50 ms", "p99 ms"}
	if *pid != 0 {
		header = append(header, "Caddy CPU/request µs")
	}
	fmt.Fprint(out, loadgen.Table(header, rows))
	if *pid != 0 {
		fmt.Fprintf(out, "\n`Caddy CPU/request`: Caddy's user + system time from /proc over that configuration's rounds, divided by its requests: what serving one request and proxying it to the app costs Caddy. A payment flow serves and proxies two.\n")
	}
	ratio := guard.total.Rate() / plain.total.Rate()
	verdict := "meets"
	if ratio < 0.97 {
		verdict = "MISSES"
	}
	gm, lo, hi := geoMeanCI(ratios)
	fmt.Fprintf(out, "\nThroughput ratio guard/plain: **%.3f** (%s the target ≥ 0.97). "+
		"Per round (each guard round against the plain round next to it): geometric mean %.3f, 95%% confidence interval %.3f–%.3f, "+
		"median %.3f, min %.3f, max %.3f.",
		ratio, verdict, gm, lo, hi, median(ratios), slices.Min(ratios), slices.Max(ratios))
	if lo < 0.97 && hi > 0.97 {
		fmt.Fprintf(out, " The interval spans 0.97: this run cannot tell whether the target is met (the machine was too noisy); run again on a quieter machine.")
	}
	fmt.Fprint(out, "\n\n")
	for _, c := range cfgs {
		if c.total.Errors > 0 {
			fmt.Fprintf(out, "%s: first error: %v\n\n", c.name, c.total.FirstErr)
		}
	}
	if *summaryPath == "" {
		return nil
	}
	conf := func(c *config) passthroughConfig {
		pc := passthroughConfig{Name: c.name, Requests: c.total.Ops, Errors: c.total.Errors, RequestsPerSec: c.total.Rate()}
		if *pid != 0 && c.total.Ops > 0 {
			pc.CPUPerRequest = c.cpu / time.Duration(c.total.Ops)
		}
		return pc
	}
	return writeJSON(*summaryPath, passthroughSummary{
		Path: *path, Conns: *conns, Rounds: *rounds, CPUMeasured: *pid != 0,
		Guard: conf(guard), Plain: conf(plain),
	})
}

// passthroughSummary is what the passthrough command writes with -summary
// and the beforeafter command reads. Durations are in nanoseconds.
type passthroughSummary struct {
	Path   string `json:"path"`
	Conns  int    `json:"conns"`
	Rounds int    `json:"rounds"`
	// CPUMeasured tells whether Caddy's CPU time was measured (-pid).
	CPUMeasured bool              `json:"cpu_measured"`
	Guard       passthroughConfig `json:"guard"` // pi_guard + reverse_proxy
	Plain       passthroughConfig `json:"plain"` // reverse_proxy alone
}

// passthroughConfig is one configuration's figures over all its rounds.
type passthroughConfig struct {
	Name           string  `json:"name"`
	Requests       int     `json:"requests"`
	Errors         int     `json:"errors"`
	RequestsPerSec float64 `json:"requests_per_s"`
	// CPUPerRequest is Caddy's CPU time over the configuration's rounds
	// divided by its requests; 0 when not measured.
	CPUPerRequest time.Duration `json:"cpu_per_request"`
}

func readPassthroughSummary(path string) (*passthroughSummary, error) {
	var s passthroughSummary
	if err := readJSON(path, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// median of a non-empty slice.
func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// geoMeanCI returns the geometric mean of positive ratios and its 95%
// confidence interval (Student's t on the logarithms).
func geoMeanCI(v []float64) (mean, lo, hi float64) {
	n := len(v)
	logs := make([]float64, n)
	var sum float64
	for i, x := range v {
		logs[i] = math.Log(x)
		sum += logs[i]
	}
	m := sum / float64(n)
	if n < 2 {
		return math.Exp(m), math.Exp(m), math.Exp(m)
	}
	var ss float64
	for _, l := range logs {
		ss += (l - m) * (l - m)
	}
	half := tQuantile975(n-1) * math.Sqrt(ss/float64(n-1)) / math.Sqrt(float64(n))
	return math.Exp(m), math.Exp(m - half), math.Exp(m + half)
}

// tQuantile975 is the 97.5th percentile of Student's t with df degrees of
// freedom.
func tQuantile975(df int) float64 {
	table := []float64{12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
		2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
		2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042}
	if df >= 1 && df <= len(table) {
		return table[df-1]
	}
	return 1.96
}

// cpuPerRequest formats CPU time per request in microseconds.
func cpuPerRequest(cpu time.Duration, requests int) string {
	if requests <= 0 {
		return "–"
	}
	return fmt.Sprintf("%.0f", float64(cpu.Microseconds())/float64(requests))
}
