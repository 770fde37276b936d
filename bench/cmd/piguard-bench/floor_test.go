package main

import (
	"bytes"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const us = time.Microsecond

// Summaries like this 2-core VM's: Node ~2.4 ms, the guard 2.2 ms on disk and
// 1.55 ms on tmpfs, the Go floor 1.2 ms.
func floorSummaries() (guard, node, floor, tmpfs *summary) {
	guard = &summary{Runs: []summaryRun{
		{LatencyMS: 0, Conc: 1, FlowsPerSec: 150, CPUPerFlow: 1100 * us},
		{LatencyMS: 0, Conc: 16, FlowsPerSec: 300, CPUPerFlow: 2200 * us},
		{LatencyMS: 0, Conc: 64, FlowsPerSec: 310, CPUPerFlow: 1500 * us},
		{LatencyMS: 50, Conc: 16, FlowsPerSec: 101, CPUPerFlow: 2000 * us},
		{LatencyMS: 50, Conc: 64, FlowsPerSec: 396, CPUPerFlow: 2000 * us},
	}}
	node = &summary{Runs: []summaryRun{
		{LatencyMS: 0, Conc: 1, FlowsPerSec: 100, CPUPerFlow: 2400 * us},
		{LatencyMS: 0, Conc: 16, FlowsPerSec: 200, CPUPerFlow: 2400 * us},
		{LatencyMS: 0, Conc: 64, FlowsPerSec: 200, CPUPerFlow: 3000 * us},
		{LatencyMS: 50, Conc: 16, FlowsPerSec: 99, CPUPerFlow: 2400 * us},
		{LatencyMS: 50, Conc: 64, FlowsPerSec: 400, CPUPerFlow: 2400 * us},
	}}
	floor = &summary{Runs: []summaryRun{
		{LatencyMS: 0, Conc: 1, FlowsPerSec: 200, CPUPerFlow: 1200 * us},
		{LatencyMS: 0, Conc: 16, FlowsPerSec: 500, CPUPerFlow: 1200 * us},
		{LatencyMS: 0, Conc: 64, FlowsPerSec: 550, CPUPerFlow: 600 * us},
		{LatencyMS: 50, Conc: 16, FlowsPerSec: 100, CPUPerFlow: 1300 * us},
		{LatencyMS: 50, Conc: 64, FlowsPerSec: 410, CPUPerFlow: 1300 * us},
	}}
	tmpfs = &summary{Runs: []summaryRun{
		{LatencyMS: 0, Conc: 16, FlowsPerSec: 350, CPUPerFlow: 1550 * us},
	}}
	return guard, node, floor, tmpfs
}

func TestLatencyBound(t *testing.T) {
	assert.InDelta(t, 426.667, latencyBound(50, 64), 1e-3) // 64 / (3 × 0.05 s)
	assert.InDelta(t, 106.667, latencyBound(50, 16), 1e-3)
	assert.Zero(t, latencyBound(0, 64), "no bound without latency")
	assert.InDelta(t, 0.96, boundShare(&summaryRun{LatencyMS: 50, Conc: 64, FlowsPerSec: 409.6}), 1e-9)
	assert.Zero(t, boundShare(&summaryRun{Conc: 64, FlowsPerSec: 400}))
}

func TestFloorRowsAndSentences(t *testing.T) {
	guard, node, floor, tmpfs := floorSummaries()
	floor.Runs = floor.Runs[1:] // no Go floor at 0 ms/1 flow: that row is left out
	rows := floorRows(guard, node, floor, tmpfs)
	require.Len(t, rows, 4)
	r16, r64 := rows[0], rows[1]
	assert.Equal(t, 16, r16.conc)
	require.NotNil(t, r16.tmpfs)
	assert.Nil(t, r64.tmpfs)
	assert.Equal(t, 1000*us, r16.rest())
	assert.Equal(t, 800*us, r16.nodeThird())
	assert.False(t, r16.thirdReachable(), "2.4/3 = 0.8 ms < 1.2 ms")
	assert.True(t, r64.thirdReachable(), "3.0/3 = 1.0 ms ≥ 0.6 ms")

	assert.Equal(t, "0 ms, 16 flows: of the guard's 2.20 ms of CPU per flow, 1.20 ms (55%) is what a bare Go server spends on the same 3 Pi calls and 2 requests, "+
		"and 1.00 ms the rest (proxying the 2 requests to the app, durable records, tokens, logs); with the records on tmpfs the rest is 0.350 ms. "+
		"1/3 of Node's 2.40 ms is 0.800 ms, below the Go floor of 1.20 ms: no server in Go that makes these calls can meet it.",
		floorSentence(r16))
	assert.Equal(t, "0 ms, 64 flows: of the guard's 1.50 ms of CPU per flow, 0.600 ms (40%) is what a bare Go server spends on the same 3 Pi calls and 2 requests, "+
		"and 0.900 ms the rest (proxying the 2 requests to the app, durable records, tokens, logs). "+
		"1/3 of Node's 3.00 ms is 1.00 ms, at or above the Go floor of 0.600 ms: a Go server that makes these calls has 0.400 ms per flow left for everything else, "+
		"where the guard spends 0.900 ms.",
		floorSentence(r64))

	// The guard measured below the floor: noise, said as such.
	noise := floorRow{lat: 0, conc: 1, guard: &guard.Runs[0], node: &node.Runs[0], floor: &summaryRun{CPUPerFlow: 1200 * us}}
	assert.Equal(t, "0 ms, 1 flows: the guard's 1.10 ms of CPU per flow is no more than a bare Go server's on the same 3 Pi calls and 2 requests (1.20 ms): "+
		"the rest is lost in the noise of this run. 1/3 of Node's 2.40 ms is 0.800 ms, below the Go floor of 1.20 ms: no server in Go that makes these calls can meet it.",
		floorSentence(noise))

	b16, b64 := rows[2], rows[3]
	assert.Equal(t, "50 ms, 16 flows: the Go floor reaches 94% of the bound (106.7/s) and Node 93%: "+
		"the harness itself (control calls to the fake between steps, the load generator) with a bare server already loses 6%. "+
		"The guard reaches 95%, not below the Go floor: none of the shortfall is the guard's own. "+
		"Even the Go floor is below 95%: the harness's own overhead exceeds the 5% the target allows.",
		boundSentence(b16))
	assert.Equal(t, "50 ms, 64 flows: the Go floor reaches 96% of the bound (426.7/s) and Node 94%: "+
		"the harness itself (control calls to the fake between steps, the load generator) with a bare server already loses 4%. "+
		"The guard reaches 93%, 3 points below the Go floor: that much is the guard's own.",
		boundSentence(b64))

	reach, bound := floorTargetLines(rows)
	assert.Equal(t, "Is 1/3 of Node's CPU per flow at or above the Go floor, so that a Go server making these calls could meet it? "+
		"0 ms/16 flows no (0.800 ms, floor 1.20 ms); 0 ms/64 flows yes (1.00 ms, floor 0.600 ms); "+
		"50 ms/16 flows no (0.800 ms, floor 1.30 ms); 50 ms/64 flows no (0.800 ms, floor 1.30 ms).", reach)
	assert.Equal(t, "The latency bound's share reached in the same run by the Go floor and by Node (the harness's own loss): "+
		"50 ms/16 flows 94% and 93%; 50 ms/64 flows 96% and 94%.", bound)
}

func TestPrintComparisonWithFloor(t *testing.T) {
	guard, node, floor, tmpfs := floorSummaries()
	var out bytes.Buffer
	printComparison(&out, guard, node, tmpfs, floor, 0)
	s := out.String()
	assert.Contains(t, s, "#### The Go floor: the same job in Go, without Caddy")
	assert.Regexp(t, `\| 0 +\| 16 +\| 300\.0 +\| 500\.0 +\| 200\.0 +\| 2\.20 +\| 1\.20 +\| 2\.40 +\| 1\.00 +\| 0\.800 +\| below the Go floor +\|`, s)
	assert.Regexp(t, `\| 0 +\| 64 +\| .*\| at or above the Go floor \|`, s)
	assert.Regexp(t, `\| 50 +\| 64 +\| 426\.7 +\| 396\.0 \(93%\) +\| 410\.0 \(96%\) +\| 400\.0 \(94%\) +\|`, s)
	assert.Contains(t, s, "- 0 ms, 1 flows: the guard's 1.10 ms")
	assert.Contains(t, s, "- 0 ms, 16 flows: of the guard's 2.20 ms")
	assert.Contains(t, s, "- 50 ms, 64 flows: the Go floor reaches 96%")
	assert.NotContains(t, s, "- 50 ms, 64 flows: of the guard's", "CPU sentences for 0 ms rows only")
	// The existing target lines stay, with the Go floor's beside them.
	assert.Contains(t, s, "- Server CPU per flow at most 1/3 of Node's, every row: **MISSED**")
	assert.Contains(t, s, "- Is 1/3 of Node's CPU per flow at or above the Go floor")
	assert.Contains(t, s, "- At 50 ms, within 5% of the latency bound (flows in flight / 3 Pi calls × latency): **MISSED** (16 flows 101.0 of 106.7/s = 95%; 64 flows 396.0 of 426.7/s = 93%)")
	assert.Contains(t, s, "- The latency bound's share reached in the same run by the Go floor and by Node")

	// Without a Go floor nothing of it is printed.
	out.Reset()
	printComparison(&out, guard, node, tmpfs, nil, 0)
	assert.NotContains(t, out.String(), "Go floor")

	// Without CPU figures (no -pid) the table stays and no split is claimed.
	for i := range floor.Runs {
		floor.Runs[i].CPUPerFlow = 0
	}
	out.Reset()
	printComparison(&out, guard, node, tmpfs, floor, 0)
	s = out.String()
	assert.Contains(t, s, "was not measured (payments -pid)")
	assert.NotContains(t, s, "- Is 1/3 of Node's CPU per flow at or above the Go floor")
}
