package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/caddy-pi-guard/caddy-pi-guard/bench/loadgen"
)

// piCallsPerFlow is the Pi API calls of one flow on the happy path (get,
// approve, complete), each delayed by the fake's latency: with it, a flow
// cannot take less than piCallsPerFlow × latency.
const piCallsPerFlow = 3

// compare prints the guard and the Node baseline side by side from the
// summaries of one `make bench` run, with the targets.
func compare(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("compare", flag.ContinueOnError)
	guardPath := fs.String("guard", "", "summary of the guard with records on disk (required)")
	nodePath := fs.String("node", "", "summary of the Node/Express baseline (required)")
	tmpfsPath := fs.String("tmpfs", "", "summary of the guard with records on tmpfs (optional)")
	floorPath := fs.String("gofloor", "", "summary of the Go baseline, the Go floor (piguard-bench gobaseline; optional)")
	syncDir := fs.String("sync-dir", "", "a directory on the guard's storage file system, where one disk sync is timed")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *guardPath == "" || *nodePath == "" {
		return fmt.Errorf("-guard and -node are required")
	}
	guard, err := readSummary(*guardPath)
	if err != nil {
		return err
	}
	node, err := readSummary(*nodePath)
	if err != nil {
		return err
	}
	var tmpfs *summary
	if *tmpfsPath != "" {
		if tmpfs, err = readSummary(*tmpfsPath); err != nil {
			return err
		}
	}
	var floor *summary
	if *floorPath != "" {
		if floor, err = readSummary(*floorPath); err != nil {
			return err
		}
	}
	var sync time.Duration
	if *syncDir != "" {
		if sync, err = timeSync(*syncDir, 200); err != nil {
			return fmt.Errorf("timing a disk sync: %w", err)
		}
	}
	printComparison(out, guard, node, tmpfs, floor, sync)
	return nil
}

// timeSync returns the median time of one synced small write in dir: write
// 2 KiB to a new file, fsync it, rename it into place, fsync the directory
// (what a durable record write costs at least).
func timeSync(dir string, n int) (time.Duration, error) {
	var s loadgen.Samples
	data := []byte(strings.Repeat("x", 2048))
	d, err := os.Open(dir)
	if err != nil {
		return 0, err
	}
	defer d.Close()
	for i := range n {
		t0 := time.Now()
		name := filepath.Join(dir, fmt.Sprintf("sync-probe-%d", i))
		f, err := os.Create(name + ".tmp")
		if err != nil {
			return 0, err
		}
		_, err = f.Write(data)
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Rename(name+".tmp", name)
		}
		if err == nil {
			err = d.Sync()
		}
		if err != nil {
			return 0, err
		}
		s.Add(time.Since(t0))
		os.Remove(name)
	}
	return s.Quantile(0.5), nil
}

func ratio(a, b float64) string {
	if b == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f", a/b)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "**MISSED**"
}

// printComparison prints the comparison; tmpfs and floor (the Go floor) may
// be nil.
func printComparison(out io.Writer, guard, node, tmpfs, floor *summary, sync time.Duration) {
	fmt.Fprintf(out, "### pi_guard against the Node/Express baseline\n\n")
	fmt.Fprintf(out, "Same fake Pi, same load generator, same run. `guard`: Caddy with pi_guard + reverse_proxy, records on disk; "+
		"`node`: bench/node-baseline (Pi's reference backend's approve and complete, axios with keep-alive, nothing durable). "+
		"Flow latency is approve + complete as the client sees them (control calls included), in ms. "+
		"CPU/flow is the server process's user + system time from /proc over the run divided by its flows, in ms; "+
		"`guard+app` adds the upstream app's CPU (the benchmark's trivial Go upstream), which the Node backend has no counterpart of.\n\n")
	header := []string{"Pi latency ms", "flows in flight", "guard flows/s", "node flows/s", "guard/node",
		"guard p50", "guard p99", "node p50", "node p99",
		"guard CPU/flow", "guard+app CPU/flow", "node CPU/flow", "guard/node CPU"}
	var rows [][]string
	type key struct{ lat, conc int }
	var keys []key
	for _, r := range guard.Runs {
		if node.run(r.LatencyMS, r.Conc) != nil {
			keys = append(keys, key{r.LatencyMS, r.Conc})
		}
	}
	worstCPU := 0.0
	var cpuMiss, rateMiss, boundMiss []string
	for _, k := range keys {
		g, n := guard.run(k.lat, k.conc), node.run(k.lat, k.conc)
		cpuRatio := ms(g.CPUPerFlow) / max(ms(n.CPUPerFlow), 1e-9)
		worstCPU = max(worstCPU, cpuRatio)
		if cpuRatio > 1.0/3 {
			cpuMiss = append(cpuMiss, fmt.Sprintf("%d ms/%d flows %.2f", k.lat, k.conc, cpuRatio))
		}
		if k.lat == 0 && k.conc >= 16 && g.FlowsPerSec < 3*n.FlowsPerSec {
			rateMiss = append(rateMiss, fmt.Sprintf("%d flows %.2fx", k.conc, g.FlowsPerSec/n.FlowsPerSec))
		}
		rows = append(rows, []string{
			fmt.Sprint(k.lat), fmt.Sprint(k.conc),
			fmt.Sprintf("%.1f", g.FlowsPerSec), fmt.Sprintf("%.1f", n.FlowsPerSec), ratio(g.FlowsPerSec, n.FlowsPerSec),
			loadgen.Ms(g.FlowP50), loadgen.Ms(g.FlowP99), loadgen.Ms(n.FlowP50), loadgen.Ms(n.FlowP99),
			loadgen.Ms(g.CPUPerFlow), loadgen.Ms(g.CPUPerFlow + g.AppCPU), loadgen.Ms(n.CPUPerFlow), fmt.Sprintf("%.2f", cpuRatio),
		})
	}
	fmt.Fprint(out, loadgen.Table(header, rows))

	if tmpfs != nil {
		fmt.Fprintf(out, "\nThe guard with its records on tmpfs (no disk syncs), same run:\n\n")
		rows = nil
		for _, r := range tmpfs.Runs {
			n := node.run(r.LatencyMS, r.Conc)
			if n == nil {
				continue
			}
			rows = append(rows, []string{
				fmt.Sprint(r.LatencyMS), fmt.Sprint(r.Conc), fmt.Sprintf("%.1f", r.FlowsPerSec), ratio(r.FlowsPerSec, n.FlowsPerSec),
				loadgen.Ms(r.FlowP50), loadgen.Ms(r.FlowP99), loadgen.Ms(r.CPUPerFlow), ratio(ms(r.CPUPerFlow), ms(n.CPUPerFlow)),
			})
		}
		fmt.Fprint(out, loadgen.Table([]string{"Pi latency ms", "flows in flight", "tmpfs flows/s", "tmpfs/node",
			"tmpfs p50", "tmpfs p99", "tmpfs CPU/flow", "tmpfs/node CPU"}, rows))
	}

	ceil := ceilingRows(guard, node)
	printCeiling(out, ceil, guard.nproc())

	fmt.Fprintf(out, "\nMemory (RSS from /proc/<pid>/status): Caddy %s MiB idle before the flows, %s MiB at most under 64 flows; "+
		"Node %s MiB idle, %s MiB at most under 64 flows.\n",
		mib(guard.IdleRSS), mib(maxRSS(guard, 64)), mib(node.IdleRSS), mib(maxRSS(node, 64)))

	var floorRowsOf []floorRow
	if floor != nil {
		floorRowsOf = floorRows(guard, node, floor, tmpfs)
		printFloor(out, floorRowsOf)
	}

	fmt.Fprintf(out, "\n#### Targets (issue 15)\n\n")
	fmt.Fprintf(out, "- Server CPU per flow at most 1/3 of Node's, every row: %s (worst guard/node %.2f", verdict(len(cpuMiss) == 0), worstCPU)
	if len(cpuMiss) > 0 {
		fmt.Fprintf(out, "; above 1/3: %s", strings.Join(cpuMiss, ", "))
	}
	fmt.Fprintf(out, ").\n")
	floorReach, floorBound := floorTargetLines(floorRowsOf)
	if floorReach != "" {
		fmt.Fprintf(out, "- %s\n", floorReach)
	}
	fmt.Fprintf(out, "- Flows/s at 16 and 64 flows, 0 ms, at least 3x Node's: %s", verdict(len(rateMiss) == 0))
	if len(rateMiss) > 0 {
		fmt.Fprintf(out, " (%s)", strings.Join(rateMiss, ", "))
	}
	fmt.Fprintf(out, ".\n")
	if line := ceilingVerdict(ceil); line != "" {
		fmt.Fprintf(out, "- %s\n", line)
	}
	var bounds []string
	for _, r := range guard.Runs {
		if r.LatencyMS == 0 {
			continue
		}
		bound := latencyBound(r.LatencyMS, r.Conc)
		share := r.FlowsPerSec / bound
		bounds = append(bounds, fmt.Sprintf("%d flows %.1f of %.1f/s = %.0f%%", r.Conc, r.FlowsPerSec, bound, 100*share))
		if share < 0.95 {
			boundMiss = append(boundMiss, fmt.Sprint(r.Conc))
		}
	}
	if len(bounds) > 0 {
		fmt.Fprintf(out, "- At 50 ms, within 5%% of the latency bound (flows in flight / %d Pi calls × latency): %s (%s).\n",
			piCallsPerFlow, verdict(len(boundMiss) == 0), strings.Join(bounds, "; "))
	}
	if floorBound != "" {
		fmt.Fprintf(out, "- %s\n", floorBound)
	}
	if one := guard.run(0, 1); one != nil && one.GuardAdded != nil {
		a, c := one.GuardAdded["approve"], one.GuardAdded["complete"]
		fmt.Fprintf(out, "- Guard-added approve p50 at one flow under 0.1 ms: %s (%s ms).\n", verdict(a < 100*time.Microsecond), loadgen.Ms(a))
		if sync > 0 {
			fmt.Fprintf(out, "- Guard-added complete p50 at one flow under one disk sync + 0.2 ms: %s (%s ms; one sync here: %s ms p50, "+
				"2 KiB write + fsync + rename + directory fsync, so the bound is %s ms).\n",
				verdict(c < sync+200*time.Microsecond), loadgen.Ms(c), loadgen.Ms(sync), loadgen.Ms(sync+200*time.Microsecond))
		} else {
			fmt.Fprintf(out, "- Guard-added complete p50 at one flow: %s ms (no disk sync timed: give -sync-dir).\n", loadgen.Ms(c))
		}
	}
}

func maxRSS(s *summary, conc int) int64 {
	var m int64
	for _, r := range s.Runs {
		if r.Conc == conc {
			m = max(m, r.RSSMax)
		}
	}
	return m
}

// ceiling is the flows/s that nproc CPUs allow when each flow costs perFlow
// of CPU time: nproc × 1000 ms / perFlow in ms. It is 0 when perFlow is
// unknown.
func ceiling(nproc int, perFlow time.Duration) float64 {
	if nproc <= 0 || perFlow <= 0 {
		return 0
	}
	return float64(nproc) * float64(time.Second) / float64(perFlow)
}

// ceilingRow is what the machine allows at one concurrency at 0 ms: the CPU
// per flow of everything but the guard, and the flows/s it leaves.
type ceilingRow struct {
	conc              int
	loadgen, pi, app  time.Duration // CPU per flow
	others            time.Duration // loadgen + pi + app
	free, withGuard   float64       // flows/s: a server of zero CPU; the guard as measured
	guardRate, target float64       // the guard's measured flows/s; 3 × Node's
	piMeasured        bool
}

// unreachable tells whether 3 × Node's flows/s is above what a server of
// zero CPU could reach here.
func (c ceilingRow) unreachable() bool { return c.free > 0 && c.target > c.free }

// ceilingRows computes the ceiling of each 0 ms run the guard and Node both
// have, from the guard's run: its load generator, fake Pi and app.
func ceilingRows(guard, node *summary) []ceilingRow {
	nproc := guard.nproc()
	var rows []ceilingRow
	for _, g := range guard.Runs {
		n := node.run(0, g.Conc)
		if g.LatencyMS != 0 || n == nil {
			continue
		}
		c := ceilingRow{conc: g.Conc, loadgen: g.LoadgenCPU, pi: g.PiCPU, app: g.AppCPU,
			guardRate: g.FlowsPerSec, target: 3 * n.FlowsPerSec, piMeasured: g.PiCPU > 0}
		c.others = c.loadgen + c.pi + c.app
		c.free = ceiling(nproc, c.others)
		c.withGuard = ceiling(nproc, c.others+g.CPUPerFlow)
		rows = append(rows, c)
	}
	return rows
}

// nproc is the CPUs of the summary's machine (this one for an old summary).
func (s *summary) nproc() int {
	if s.NProc > 0 {
		return s.NProc
	}
	return runtime.NumCPU()
}

func printCeiling(out io.Writer, rows []ceilingRow, nproc int) {
	if len(rows) == 0 {
		return
	}
	fmt.Fprintf(out, "\n#### What this machine allows\n\n")
	fmt.Fprintf(out, "The load generator, the fake Pi and the app share the %d CPUs with the server. "+
		"They spend their CPU on every flow, whatever the server does. "+
		"So even a server that cost no CPU could not pass %d × 1000 ms / (their CPU per flow) flows/s: that is `ceiling`. "+
		"`with the guard` also counts the guard's own CPU per flow: the rate with every CPU busy. "+
		"CPU per flow in ms, from the guard's runs at 0 ms.\n\n", nproc, nproc)
	var tab [][]string
	for _, c := range rows {
		pi := loadgen.Ms(c.pi)
		if !c.piMeasured {
			pi = "–"
		}
		verdict := "below the ceiling"
		if c.unreachable() {
			verdict = "above the ceiling: out of reach here"
		}
		tab = append(tab, []string{
			fmt.Sprint(c.conc), loadgen.Ms(c.loadgen), pi, loadgen.Ms(c.app), loadgen.Ms(c.others),
			rate(c.free), rate(c.withGuard), rate(c.guardRate), rate(c.target), verdict,
		})
	}
	fmt.Fprint(out, loadgen.Table([]string{"flows in flight", "loadgen CPU/flow", "fake Pi CPU/flow", "app CPU/flow", "together",
		"ceiling flows/s", "with the guard flows/s", "guard flows/s", "3x node flows/s", "3x node is"}, tab))
	if !rows[0].piMeasured {
		fmt.Fprintf(out, "\nThe fake Pi's CPU was not measured (payments -pi-pid). The ceiling is too high by its share.\n")
	}
}

// ceilingVerdict says, for 16 flows and more, whether 3 × Node's flows/s is
// within this machine's reach at all.
func ceilingVerdict(rows []ceilingRow) string {
	var parts []string
	for _, c := range rows {
		if c.conc < 16 || c.free == 0 {
			continue
		}
		answer := "yes"
		if c.unreachable() {
			answer = "no"
		}
		parts = append(parts, fmt.Sprintf("%d flows: %s, 3x Node is %s/s and the ceiling %s/s.", c.conc, answer, rate(c.target), rate(c.free)))
	}
	if len(parts) == 0 {
		return ""
	}
	return "Is 3x Node's flows/s within this machine's reach, even for a server of zero CPU? " + strings.Join(parts, " ")
}

func rate(r float64) string {
	if r == 0 {
		return "–"
	}
	return fmt.Sprintf("%.1f", r)
}
