package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/caddy-pi-guard/caddy-pi-guard/bench/loadgen"
)

// The beforeafter command: the guard's own cost per payment of two builds of
// Caddy with pi_guard (an earlier revision, "before", and the one under test,
// "after"), from payments runs against each that alternated in rounds, with
// the Go floor's CPU per flow and Caddy's CPU per proxied request of the same
// run of make bench taken off. Issue 22 asks that the guard's own cost be at
// least halved at 16 and 64 flows in flight.

// The names a round's payments summaries carry (payments -name).
const (
	buildBefore = "before"
	buildAfter  = "after"
)

// baTargetConcs are the flows in flight of issue 22's target.
var baTargetConcs = []int{16, 64}

// baRound is one round: a payments run against each build, in the order they
// ran.
type baRound struct {
	first         string // buildBefore or buildAfter
	before, after *summary
}

// baSide is one build's figures at one concurrency over the rounds.
type baSide struct {
	rounds         int
	cpu            time.Duration // median CPU per flow over the rounds
	cpuMin, cpuMax time.Duration
	rate           float64 // median flows/s over the rounds
	errors         int     // over all rounds
}

// baRow is one concurrency's before and after, with what is taken off both.
type baRow struct {
	conc          int
	before, after baSide
	// floor is the Go floor's CPU per flow, the median of its runs; 0 when
	// not measured.
	floor baYardstick
	proxy time.Duration // Caddy's CPU per request with reverse_proxy alone (GET, passthrough)
	// proxyFlow is Caddy's CPU per flow with reverse_proxy alone, the flow's
	// two posts proxied as they are (payments -plain), the median of its
	// runs; 0 when not measured, and then 2 × proxy stands for it.
	proxyFlow baYardstick
}

// baYardstick is what is taken off both builds' CPU per flow, measured in
// one or more runs of the same script run (the script measures it again in
// every round, so that its noise does not decide the ratio): their median
// and range.
type baYardstick struct {
	n                   int
	median, least, most time.Duration
}

// yardstickOf is the median and range, over the summaries that have a run at
// conc flows in flight and 0 ms, of their CPU per flow.
func yardstickOf(sums []*summary, conc int) baYardstick {
	var cpus []float64
	for _, s := range sums {
		if run := s.run(0, conc); run != nil {
			cpus = append(cpus, float64(run.CPUPerFlow))
		}
	}
	if len(cpus) == 0 {
		return baYardstick{}
	}
	y := baYardstick{n: len(cpus)}
	y.median, y.least, y.most = spread(cpus)
	return y
}

// spread is the median, least and most of CPU times (not empty).
func spread(cpus []float64) (med, least, most time.Duration) {
	return time.Duration(median(cpus)), time.Duration(slices.Min(cpus)), time.Duration(slices.Max(cpus))
}

// String is the median in ms, with the range when there was more than one
// run; "–" when not measured.
func (y baYardstick) String() string {
	switch y.n {
	case 0:
		return "–"
	case 1:
		return loadgen.Ms(y.median)
	}
	return fmt.Sprintf("%s (%s–%s)", loadgen.Ms(y.median), loadgen.Ms(y.least), loadgen.Ms(y.most))
}

// known tells whether the row has what the guard's own cost needs: both
// builds' CPU per flow and the Go floor's.
func (r baRow) known() bool {
	return r.before.cpu > 0 && r.after.cpu > 0 && r.floor.median > 0
}

// own is the guard's own cost per payment of one build: its CPU per flow less
// the Go floor's (the 2 requests served and 3 Pi calls, in plain Go) and
// less Caddy's cost of proxying the flow's 2 requests to the app.
func (r baRow) own(s baSide) time.Duration { return s.cpu - r.floor.median - r.proxying() }

// proxying is what proxying the flow's 2 requests to the app costs Caddy:
// the two posts themselves through reverse_proxy alone when measured, twice a
// passthrough GET's cost otherwise.
func (r baRow) proxying() time.Duration {
	if r.proxyFlow.median > 0 {
		return r.proxyFlow.median
	}
	return 2 * r.proxy
}

// ownByGET is own with twice a passthrough GET's cost taken off, the
// yardstick the comparison used before the posts were measured.
func (r baRow) ownByGET(s baSide) time.Duration { return s.cpu - r.floor.median - 2*r.proxy }

// ratio is after's own cost over before's; ok is false when before's is not
// positive (lost in noise), when no ratio means anything.
func (r baRow) ratio() (ratio float64, ok bool) {
	b := r.own(r.before)
	if !r.known() || b <= 0 {
		return 0, false
	}
	return float64(r.own(r.after)) / float64(b), true
}

// beforeAfter prints the guard's own cost per payment, before and after.
func beforeAfter(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("beforeafter", flag.ContinueOnError)
	var roundPaths [][]string
	fs.Func("round", "one round: the payments -summary files of its two runs, comma-separated, in the order they ran, "+
		"each made with -name before or -name after (repeat the flag for each round, in order)", func(v string) error {
		paths := strings.Split(v, ",")
		if len(paths) != 2 || paths[0] == "" || paths[1] == "" {
			return fmt.Errorf("want two summary files, comma-separated, got %q", v)
		}
		roundPaths = append(roundPaths, paths)
		return nil
	})
	var floorPaths, proxyPaths []string
	fs.Func("gofloor", "payments -summary of the Go floor (piguard-bench gobaseline) from the same run (required; repeat the flag "+
		"for each of its runs: the median is taken off)", func(v string) error {
		floorPaths = append(floorPaths, v)
		return nil
	})
	ptPath := fs.String("passthrough", "", "passthrough -summary from the same run, measured with -pid (required)")
	fs.Func("proxyflows", "payments -plain -summary against reverse_proxy alone from the same run, measured with -pid "+
		"(optional: without it, twice the passthrough's CPU per request stands for proxying a flow; repeat the flag for each "+
		"of its runs: the median is taken off)", func(v string) error {
		proxyPaths = append(proxyPaths, v)
		return nil
	})
	beforeRev := fs.String("before-rev", buildBefore, "the before build's revision, as the report names it")
	afterRev := fs.String("after-rev", buildAfter, "the after build's revision, as the report names it")
	beforeCaddy := fs.String("before-caddy", "", "the Caddy version the before build uses (optional: a difference is pointed out)")
	afterCaddy := fs.String("after-caddy", "", "the Caddy version the after build uses (optional)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if len(roundPaths) == 0 || len(floorPaths) == 0 || *ptPath == "" {
		return errors.New("-round (at least one), -gofloor and -passthrough are required")
	}
	var rounds []baRound
	for i, paths := range roundPaths {
		r, err := readRound(paths)
		if err != nil {
			return fmt.Errorf("round %d: %w", i+1, err)
		}
		rounds = append(rounds, r)
	}
	floors, err := readSummaries(floorPaths)
	if err != nil {
		return err
	}
	pt, err := readPassthroughSummary(*ptPath)
	if err != nil {
		return err
	}
	if !pt.CPUMeasured || pt.Plain.CPUPerRequest <= 0 {
		return fmt.Errorf("%s: Caddy's CPU per request with reverse_proxy alone was not measured (passthrough -pid)", *ptPath)
	}
	proxyFlows, err := readSummaries(proxyPaths)
	if err != nil {
		return err
	}
	note := ""
	if *beforeCaddy != "" && *afterCaddy != "" && *beforeCaddy != *afterCaddy {
		note = fmt.Sprintf("The two builds use different versions of Caddy (before %s, after %s): the cost of proxying, measured with the after build, "+
			"may not be the before build's, and part of the difference may be Caddy's.", *beforeCaddy, *afterCaddy)
	}
	printBeforeAfter(out, *beforeRev, *afterRev, rounds, baRows(rounds, floors, pt.Plain.CPUPerRequest, proxyFlows), note)
	return nil
}

// readSummaries reads payments summaries, in order.
func readSummaries(paths []string) ([]*summary, error) {
	var sums []*summary
	for _, p := range paths {
		s, err := readSummary(p)
		if err != nil {
			return nil, err
		}
		sums = append(sums, s)
	}
	return sums, nil
}

// readRound reads one round's two summaries and tells them apart by name.
func readRound(paths []string) (baRound, error) {
	var r baRound
	sums, err := readSummaries(paths)
	if err != nil {
		return r, err
	}
	for i, s := range sums {
		p := paths[i]
		switch {
		case s.Name == buildBefore && r.before == nil:
			r.before = s
		case s.Name == buildAfter && r.after == nil:
			r.after = s
		default:
			return r, fmt.Errorf("%s: a round needs one summary named %q and one named %q, this one is named %q", p, buildBefore, buildAfter, s.Name)
		}
		if r.first == "" {
			r.first = s.Name
		}
	}
	return r, nil
}

// baRows computes one row per concurrency at 0 ms Pi latency, in the order of
// the first round's before runs. floors are the Go floor's runs, proxy is
// Caddy's CPU per request with reverse_proxy alone, proxyFlows (none when not
// measured) its runs of the flow's posts.
func baRows(rounds []baRound, floors []*summary, proxy time.Duration, proxyFlows []*summary) []baRow {
	if len(rounds) == 0 {
		return nil
	}
	var rows []baRow
	for _, first := range rounds[0].before.Runs {
		if first.LatencyMS != 0 {
			continue
		}
		conc := first.Conc
		r := baRow{conc: conc, proxy: proxy,
			before: baSideOf(rounds, conc, func(r baRound) *summary { return r.before }),
			after:  baSideOf(rounds, conc, func(r baRound) *summary { return r.after }),
		}
		r.floor, r.proxyFlow = yardstickOf(floors, conc), yardstickOf(proxyFlows, conc)
		rows = append(rows, r)
	}
	return rows
}

// baSideOf is one build's median over the rounds that have a run at conc
// flows in flight and 0 ms.
func baSideOf(rounds []baRound, conc int, build func(baRound) *summary) baSide {
	var cpus, rates []float64
	var s baSide
	for _, r := range rounds {
		run := build(r).run(0, conc)
		if run == nil {
			continue
		}
		s.rounds++
		s.errors += run.Errors
		cpus = append(cpus, float64(run.CPUPerFlow))
		rates = append(rates, run.FlowsPerSec)
	}
	if s.rounds == 0 {
		return s
	}
	s.cpu, s.cpuMin, s.cpuMax = spread(cpus)
	s.rate = median(rates)
	return s
}

// msRange is a median in ms with its range over the rounds.
func msRange(s baSide) string {
	if s.rounds == 0 {
		return "–"
	}
	if s.rounds == 1 {
		return loadgen.Ms(s.cpu)
	}
	return fmt.Sprintf("%s (%s–%s)", loadgen.Ms(s.cpu), loadgen.Ms(s.cpuMin), loadgen.Ms(s.cpuMax))
}

// signedMs is loadgen.Ms for a difference, which may be negative.
func signedMs(d time.Duration) string {
	if d < 0 {
		return "−" + loadgen.Ms(-d)
	}
	return loadgen.Ms(d)
}

func printBeforeAfter(out io.Writer, beforeRev, afterRev string, rounds []baRound, rows []baRow, note string) {
	fmt.Fprintf(out, "### Before %s, after %s\n\n", beforeRev, afterRev)
	fmt.Fprintf(out, "`before`: Caddy built from %s; `after`: Caddy built from %s. Each runs in a Caddy process of its own with one site, "+
		"pi_guard + reverse_proxy with the same options, the same upstream and the same fake Pi, its records in file storage of its own "+
		"on the same file system. Payment flows at 0 ms Pi latency, in %d rounds of one payments run against each build, "+
		"the two taking turns to go first, so that the machine's drift falls on both alike.\n\n", beforeRev, afterRev, len(rounds))
	fmt.Fprintf(out, "`CPU/flow`: the Caddy process's user + system time (/proc) over a run divided by its flows, in ms; "+
		"the median over the rounds, their range in parentheses. `flows/s`: the median over the rounds. "+
		"`Go floor`: the CPU per flow of `piguard-bench gobaseline` in the same run of the script, what the flow's 2 requests served and %d Pi calls cost at least in Go; "+
		"the median over its runs when it ran more than once (the script runs it again in every round), their range in parentheses. "+
		"`2 × GET`: twice Caddy's CPU per request with reverse_proxy alone in the same run's passthrough (GET without a body). "+
		"`2 posts`: Caddy's CPU per flow with reverse_proxy alone when the flow's two posts, bodies and all, are sent to it "+
		"(`piguard-bench payments -plain`, in the same run): what proxying the flow's 2 requests to the app costs Caddy "+
		"(when it was not measured, 2 × GET stands for it); the median and range over its runs, as for the Go floor. "+
		"`own` = CPU/flow − Go floor − 2 posts: the guard's own cost per payment. "+
		"`after/before`: after's own cost over before's (issue 22 asks for at most 0.5 at 16 and 64 flows).\n\n", piCallsPerFlow)
	var tab [][]string
	for _, r := range rows {
		floor, proxy2, posts, ownB, ownA, ratioS := r.floor.String(), signedMs(2*r.proxy), r.proxyFlow.String(), "–", "–", "–"
		if r.known() {
			ownB, ownA = signedMs(r.own(r.before)), signedMs(r.own(r.after))
		}
		if q, ok := r.ratio(); ok {
			ratioS = fmt.Sprintf("%.2f", q)
		}
		tab = append(tab, []string{
			fmt.Sprint(r.conc), rate(r.before.rate), rate(r.after.rate), msRange(r.before), msRange(r.after),
			floor, proxy2, posts, ownB, ownA, ratioS,
		})
	}
	fmt.Fprint(out, loadgen.Table([]string{"flows in flight", "before flows/s", "after flows/s", "before CPU/flow", "after CPU/flow",
		"Go floor CPU/flow", "2 × GET CPU", "2 posts CPU", "before own", "after own", "after/before own"}, tab))
	fmt.Fprintln(out)
	if line := baTargetLine(rows); line != "" {
		fmt.Fprintf(out, "- %s\n", line)
	}
	if line := byGETLine(rows); line != "" {
		fmt.Fprintf(out, "- %s\n", line)
	}
	for _, r := range rows {
		if r.known() && r.own(r.before) <= 0 {
			fmt.Fprintf(out, "- %d flows: before's CPU per flow is no more than the Go floor and the proxying: its own cost is lost in the noise of this run, and no ratio is given.\n", r.conc)
		}
		if r.floor.n == 0 {
			fmt.Fprintf(out, "- %d flows: the Go floor has no run at 0 ms with %d flows in flight: no own cost.\n", r.conc, r.conc)
		}
		for _, s := range []struct {
			name string
			side baSide
		}{{buildBefore, r.before}, {buildAfter, r.after}} {
			if s.side.rounds < len(rounds) {
				fmt.Fprintf(out, "- %d flows: %s has a run in %d of the %d rounds only.\n", r.conc, s.name, s.side.rounds, len(rounds))
			}
			if s.side.errors > 0 {
				fmt.Fprintf(out, "- %d flows: %s had %d failed flows over its rounds (see the script's output).\n", r.conc, s.name, s.side.errors)
			}
		}
	}
	if note != "" {
		fmt.Fprintf(out, "- %s\n", note)
	}

	fmt.Fprintf(out, "\nPer round (CPU/flow in ms; `after/before CPU` is the whole CPU per flow's ratio, the guard's own cost's and what is taken off it together):\n\n")
	tab = nil
	for i, rd := range rounds {
		order := buildBefore + ", " + buildAfter
		if rd.first == buildAfter {
			order = buildAfter + ", " + buildBefore
		}
		for _, r := range rows {
			b, a := rd.before.run(0, r.conc), rd.after.run(0, r.conc)
			if b == nil || a == nil {
				continue
			}
			tab = append(tab, []string{fmt.Sprint(i + 1), order, fmt.Sprint(r.conc),
				fmt.Sprintf("%.1f", b.FlowsPerSec), fmt.Sprintf("%.1f", a.FlowsPerSec),
				loadgen.Ms(b.CPUPerFlow), loadgen.Ms(a.CPUPerFlow), ratio(float64(a.CPUPerFlow), float64(b.CPUPerFlow))})
		}
	}
	fmt.Fprint(out, loadgen.Table([]string{"round", "order", "flows in flight", "before flows/s", "after flows/s",
		"before CPU/flow", "after CPU/flow", "after/before CPU"}, tab))
}

// byGETLine gives the rows' ratios with 2 × GET taken off instead of the
// posts, for comparison with runs made before the posts were measured; ""
// when the posts were not measured.
func byGETLine(rows []baRow) string {
	var parts []string
	for _, r := range rows {
		b := r.ownByGET(r.before)
		if r.proxyFlow.n == 0 || !r.known() || b <= 0 {
			continue
		}
		parts = append(parts, fmt.Sprintf("%d flows %s → %s ms, %.2f", r.conc, signedMs(b), signedMs(r.ownByGET(r.after)), float64(r.ownByGET(r.after))/float64(b)))
	}
	if len(parts) == 0 {
		return ""
	}
	return "With 2 × GET taken off instead of the 2 posts (the yardstick of earlier runs), own before → after and after/before: " + strings.Join(parts, "; ") + "."
}

// baTargetLine says whether the guard's own cost was at least halved at the
// flows in flight of issue 22's target; "" when no row has them.
func baTargetLine(rows []baRow) string {
	var parts []string
	met, unknown := true, false
	for _, r := range rows {
		if !slices.Contains(baTargetConcs, r.conc) {
			continue
		}
		q, ok := r.ratio()
		if !ok {
			unknown = true
			parts = append(parts, fmt.Sprintf("%d flows –", r.conc))
			continue
		}
		met = met && q <= 0.5
		parts = append(parts, fmt.Sprintf("%d flows %.2f", r.conc, q))
	}
	if len(parts) == 0 {
		return ""
	}
	verdict := "met"
	switch {
	case !met:
		verdict = "**MISSED**"
	case unknown:
		verdict = "cannot tell"
	}
	return fmt.Sprintf("The guard's own cost per payment at most half of before's at 16 and 64 flows (issue 22): %s (after/before %s).",
		verdict, strings.Join(parts, ", "))
}
