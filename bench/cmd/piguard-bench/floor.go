package main

import (
	"fmt"
	"io"
	"math"
	"strings"
	"time"

	"github.com/caddy-pi-guard/caddy-pi-guard/bench/loadgen"
)

// The "Go floor" of compare: the gobaseline command's runs (the Node
// baseline's job in plain Go), against which the guard's CPU per flow splits
// into what any Go server making the same calls spends and the rest, and
// against which the 50 ms rows tell the harness's own overhead from the
// guard's.

// floorRow is one run (one latency, one concurrency) that the guard, Node and
// the Go floor all have.
type floorRow struct {
	lat, conc          int
	guard, node, floor *summaryRun
	tmpfs              *summaryRun // the guard with records on tmpfs; nil without
}

// floorRows pairs the guard's runs with Node's and the Go floor's, in the
// guard's order. tmpfs may be nil.
func floorRows(guard, node, floor, tmpfs *summary) []floorRow {
	var rows []floorRow
	for i := range guard.Runs {
		g := &guard.Runs[i]
		n, f := node.run(g.LatencyMS, g.Conc), floor.run(g.LatencyMS, g.Conc)
		if n == nil || f == nil {
			continue
		}
		r := floorRow{lat: g.LatencyMS, conc: g.Conc, guard: g, node: n, floor: f}
		if tmpfs != nil {
			r.tmpfs = tmpfs.run(g.LatencyMS, g.Conc)
		}
		rows = append(rows, r)
	}
	return rows
}

// cpuMeasured tells whether the three servers' CPU per flow was measured
// (payments -pid).
func (r floorRow) cpuMeasured() bool {
	return r.guard.CPUPerFlow > 0 && r.node.CPUPerFlow > 0 && r.floor.CPUPerFlow > 0
}

// nodeThird is the CPU target: 1/3 of Node's CPU per flow.
func (r floorRow) nodeThird() time.Duration { return r.node.CPUPerFlow / 3 }

// rest is the guard's CPU per flow above the Go floor's: proxying to the app,
// records, tokens, logs. It is negative when the guard measured less.
func (r floorRow) rest() time.Duration { return r.guard.CPUPerFlow - r.floor.CPUPerFlow }

// thirdReachable tells whether 1/3 of Node's CPU per flow is at or above the
// Go floor: whether a Go server making these calls could meet the target.
func (r floorRow) thirdReachable() bool { return r.nodeThird() >= r.floor.CPUPerFlow }

// floorSentence splits the guard's CPU per flow of one row into the Go
// floor's and the rest, and says whether 1/3 of Node's is reachable.
func floorSentence(r floorRow) string {
	var b strings.Builder
	g, f := r.guard.CPUPerFlow, r.floor.CPUPerFlow
	fmt.Fprintf(&b, "%d ms, %d flows: ", r.lat, r.conc)
	if r.rest() > 0 {
		fmt.Fprintf(&b, "of the guard's %s ms of CPU per flow, %s ms (%.0f%%) is what a bare Go server spends on the same %d Pi calls and 2 requests, "+
			"and %s ms the rest (proxying the 2 requests to the app, durable records, tokens, logs)",
			loadgen.Ms(g), loadgen.Ms(f), 100*ms(f)/ms(g), piCallsPerFlow, loadgen.Ms(r.rest()))
		if r.tmpfs != nil && r.tmpfs.CPUPerFlow > 0 {
			fmt.Fprintf(&b, "; with the records on tmpfs the rest is %s ms", loadgen.Ms(r.tmpfs.CPUPerFlow-f))
		}
		b.WriteString(". ")
	} else {
		fmt.Fprintf(&b, "the guard's %s ms of CPU per flow is no more than a bare Go server's on the same %d Pi calls and 2 requests (%s ms): "+
			"the rest is lost in the noise of this run. ", loadgen.Ms(g), piCallsPerFlow, loadgen.Ms(f))
	}
	third := r.nodeThird()
	if r.thirdReachable() {
		fmt.Fprintf(&b, "1/3 of Node's %s ms is %s ms, at or above the Go floor of %s ms: a Go server that makes these calls has %s ms per flow left for everything else, "+
			"where the guard spends %s ms.", loadgen.Ms(r.node.CPUPerFlow), loadgen.Ms(third), loadgen.Ms(f), loadgen.Ms(third-f), loadgen.Ms(max(r.rest(), 0)))
	} else {
		fmt.Fprintf(&b, "1/3 of Node's %s ms is %s ms, below the Go floor of %s ms: no server in Go that makes these calls can meet it.",
			loadgen.Ms(r.node.CPUPerFlow), loadgen.Ms(third), loadgen.Ms(f))
	}
	return b.String()
}

// latencyBound is the flows/s that conc flows in flight allow when each of a
// flow's piCallsPerFlow Pi calls takes lat ms: conc / (3 × lat). It is 0 at
// 0 ms (no bound).
func latencyBound(lat, conc int) float64 {
	if lat <= 0 {
		return 0
	}
	return float64(conc) / (piCallsPerFlow * float64(lat) / 1000)
}

// boundShare is the share of the latency bound a run reached (0 at 0 ms).
func boundShare(r *summaryRun) float64 {
	b := latencyBound(r.LatencyMS, r.Conc)
	if b == 0 {
		return 0
	}
	return r.FlowsPerSec / b
}

func pct(share float64) int { return int(math.Round(100 * share)) }

// boundSentence tells, for one row with Pi latency, what share of the
// latency bound the Go floor and Node reach (the harness's own loss with a
// bare server), and how much further below it the guard is (its own).
func boundSentence(r floorRow) string {
	gp, fp, np := pct(boundShare(r.guard)), pct(boundShare(r.floor)), pct(boundShare(r.node))
	var b strings.Builder
	fmt.Fprintf(&b, "%d ms, %d flows: the Go floor reaches %d%% of the bound (%s/s) and Node %d%%: "+
		"the harness itself (control calls to the fake between steps, the load generator) with a bare server already loses %d%%. ",
		r.lat, r.conc, fp, rate(latencyBound(r.lat, r.conc)), np, max(100-fp, 0))
	if d := fp - gp; d > 0 {
		fmt.Fprintf(&b, "The guard reaches %d%%, %d points below the Go floor: that much is the guard's own.", gp, d)
	} else {
		fmt.Fprintf(&b, "The guard reaches %d%%, not below the Go floor: none of the shortfall is the guard's own.", gp)
	}
	if fp < 95 {
		b.WriteString(" Even the Go floor is below 95%: the harness's own overhead exceeds the 5% the target allows.")
	}
	return b.String()
}

// printFloor prints the Go floor's table, one sentence per 0 ms row on the
// guard's CPU per flow, and one per row with Pi latency on the latency bound.
func printFloor(out io.Writer, rows []floorRow) {
	if len(rows) == 0 {
		return
	}
	fmt.Fprintf(out, "\n#### The Go floor: the same job in Go, without Caddy\n\n")
	fmt.Fprintf(out, "`Go floor`: `piguard-bench gobaseline`, the Node baseline's routes and Pi calls in plain Go "+
		"(net/http server, keep-alive http.Client, encoding/json, nothing durable, no log line per request), "+
		"against the same fake Pi in the same run: the least CPU the five HTTP exchanges of a flow (2 requests served, %d Pi calls) take in Go. "+
		"What the guard spends above it (`guard − floor`) is proxying the 2 requests to the app, durable records, tokens and logs. "+
		"When `node/3` (the target) is below the Go floor, no Go server that makes these calls can meet it. CPU per flow in ms.\n\n", piCallsPerFlow)
	var tab [][]string
	for _, r := range rows {
		diff, third, verdict := "–", "–", "–"
		if r.cpuMeasured() {
			diff, third, verdict = loadgen.Ms(r.rest()), loadgen.Ms(r.nodeThird()), "below the Go floor"
			if r.thirdReachable() {
				verdict = "at or above the Go floor"
			}
		}
		tab = append(tab, []string{
			fmt.Sprint(r.lat), fmt.Sprint(r.conc),
			fmt.Sprintf("%.1f", r.guard.FlowsPerSec), fmt.Sprintf("%.1f", r.floor.FlowsPerSec), fmt.Sprintf("%.1f", r.node.FlowsPerSec),
			loadgen.Ms(r.guard.CPUPerFlow), loadgen.Ms(r.floor.CPUPerFlow), loadgen.Ms(r.node.CPUPerFlow), diff, third, verdict,
		})
	}
	fmt.Fprint(out, loadgen.Table([]string{"Pi latency ms", "flows in flight", "guard flows/s", "Go floor flows/s", "node flows/s",
		"guard CPU/flow", "Go floor CPU/flow", "node CPU/flow", "guard − floor", "node/3", "node/3 is"}, tab))

	var cpu, bound []string
	var boundTab [][]string
	for _, r := range rows {
		if r.lat == 0 && r.cpuMeasured() {
			cpu = append(cpu, floorSentence(r))
		}
		if r.lat > 0 {
			bound = append(bound, boundSentence(r))
			share := func(s *summaryRun) string { return fmt.Sprintf("%.1f (%d%%)", s.FlowsPerSec, pct(boundShare(s))) }
			boundTab = append(boundTab, []string{fmt.Sprint(r.lat), fmt.Sprint(r.conc), rate(latencyBound(r.lat, r.conc)),
				share(r.guard), share(r.floor), share(r.node)})
		}
	}
	if len(cpu) > 0 {
		fmt.Fprintf(out, "\nThe guard's CPU per flow at 0 ms, against the Go floor:\n\n")
		for _, s := range cpu {
			fmt.Fprintf(out, "- %s\n", s)
		}
	} else {
		fmt.Fprintf(out, "\nThe servers' CPU per flow was not measured (payments -pid): no split of the guard's against the Go floor.\n")
	}
	if len(boundTab) > 0 {
		fmt.Fprintf(out, "\nWith Pi latency, the target is within 5%% of the latency bound (flows in flight / (%d × latency)). "+
			"Every flow also makes 2 control calls to the fake between its steps, which the bound leaves out: "+
			"what the Go floor and Node reach in the same run is the harness's own share. Flows/s and share of the bound:\n\n", piCallsPerFlow)
		fmt.Fprint(out, loadgen.Table([]string{"Pi latency ms", "flows in flight", "bound flows/s", "guard", "Go floor", "node"}, boundTab))
		fmt.Fprintln(out)
		for _, s := range bound {
			fmt.Fprintf(out, "- %s\n", s)
		}
	}
}

// floorTargetLines are the Targets section's lines on the Go floor: reach
// tells, per row, whether 1/3 of Node's CPU per flow is within a Go server's
// reach; bound, per row with Pi latency, the latency bound's share the Go
// floor and Node reach. Each is "" when there is nothing to say.
func floorTargetLines(rows []floorRow) (reach, bound string) {
	var reachs, bounds []string
	for _, r := range rows {
		if r.cpuMeasured() {
			answer := "no"
			if r.thirdReachable() {
				answer = "yes"
			}
			reachs = append(reachs, fmt.Sprintf("%d ms/%d flows %s (%s ms, floor %s ms)", r.lat, r.conc, answer,
				loadgen.Ms(r.nodeThird()), loadgen.Ms(r.floor.CPUPerFlow)))
		}
		if r.lat > 0 {
			bounds = append(bounds, fmt.Sprintf("%d ms/%d flows %d%% and %d%%", r.lat, r.conc, pct(boundShare(r.floor)), pct(boundShare(r.node))))
		}
	}
	if len(reachs) > 0 {
		reach = "Is 1/3 of Node's CPU per flow at or above the Go floor, so that a Go server making these calls could meet it? " +
			strings.Join(reachs, "; ") + "."
	}
	if len(bounds) > 0 {
		bound = "The latency bound's share reached in the same run by the Go floor and by Node (the harness's own loss): " +
			strings.Join(bounds, "; ") + "."
	}
	return reach, bound
}
