package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPrintComparisonVerdicts(t *testing.T) {
	ms := time.Millisecond
	node := &summary{Name: "node", IdleRSS: 60 << 20, Runs: []summaryRun{
		{LatencyMS: 0, Conc: 1, FlowsPerSec: 100, CPUPerFlow: 3 * ms},
		{LatencyMS: 0, Conc: 16, FlowsPerSec: 200, CPUPerFlow: 3 * ms},
		{LatencyMS: 0, Conc: 64, FlowsPerSec: 200, CPUPerFlow: 3 * ms, RSSMax: 120 << 20},
		{LatencyMS: 50, Conc: 64, FlowsPerSec: 300, CPUPerFlow: 3 * ms},
	}}
	good := &summary{Name: "guard", IdleRSS: 50 << 20, Runs: []summaryRun{
		{LatencyMS: 0, Conc: 1, FlowsPerSec: 300, CPUPerFlow: ms, GuardAdded: map[string]time.Duration{"approve": 50 * time.Microsecond, "complete": 1100 * time.Microsecond}},
		{LatencyMS: 0, Conc: 16, FlowsPerSec: 600, CPUPerFlow: ms},
		{LatencyMS: 0, Conc: 64, FlowsPerSec: 600, CPUPerFlow: ms, RSSMax: 70 << 20},
		{LatencyMS: 50, Conc: 64, FlowsPerSec: 410, CPUPerFlow: ms},
	}}
	var out bytes.Buffer
	printComparison(&out, good, node, nil, nil, ms)
	s := out.String()
	assert.NotContains(t, s, "MISSED")
	assert.Contains(t, s, "Caddy 50.0 MiB idle before the flows, 70.0 MiB at most under 64 flows")
	assert.Contains(t, s, "64 flows 410.0 of 426.7/s = 96%")

	bad := *good
	bad.Runs = append([]summaryRun(nil), good.Runs...)
	bad.Runs[1].FlowsPerSec = 590 // 2.95x
	bad.Runs[2].CPUPerFlow = 1100 * time.Microsecond
	bad.Runs[3].FlowsPerSec = 400 // 94% of the bound
	bad.Runs[0].GuardAdded = map[string]time.Duration{"approve": 100 * time.Microsecond, "complete": 1300 * time.Microsecond}
	out.Reset()
	printComparison(&out, &bad, node, nil, nil, ms)
	s = out.String()
	assert.Contains(t, s, "at least 3x Node's: **MISSED** (16 flows 2.95x)")
	assert.Contains(t, s, "every row: **MISSED** (worst guard/node 0.37; above 1/3: 0 ms/64 flows 0.37)")
	assert.Contains(t, s, "latency bound (flows in flight / 3 Pi calls × latency): **MISSED**")
	assert.Contains(t, s, "approve p50 at one flow under 0.1 ms: **MISSED**")
	assert.Contains(t, s, "one disk sync + 0.2 ms: **MISSED**")
}

func TestSummaryRoundTrip(t *testing.T) {
	p := filepath.Join(t.TempDir(), "s.json")
	require.NoError(t, os.WriteFile(p, []byte(`{"name":"x","idle_rss_bytes":5,"runs":[{"latency_ms":50,"concurrency":16,"flows_per_s":2.5}]}`), 0o644))
	s, err := readSummary(p)
	require.NoError(t, err)
	require.NotNil(t, s.run(50, 16))
	assert.Nil(t, s.run(0, 16))
	assert.InDelta(t, 2.5, s.run(50, 16).FlowsPerSec, 1e-9)
}

func TestTimeSync(t *testing.T) {
	d, err := timeSync(t.TempDir(), 3)
	require.NoError(t, err)
	assert.Positive(t, d)
}

func TestCeiling(t *testing.T) {
	assert.InDelta(t, 500.0, ceiling(2, 4*time.Millisecond), 1e-9) // 2 × 1000 ms / 4 ms
	assert.InDelta(t, 1600.0, ceiling(4, 2500*time.Microsecond), 1e-9)
	assert.Zero(t, ceiling(2, 0), "unknown CPU per flow: no ceiling")
	assert.Zero(t, ceiling(0, time.Millisecond))
}

func TestCeilingRowsAndVerdict(t *testing.T) {
	ms := time.Millisecond
	node := &summary{Runs: []summaryRun{
		{LatencyMS: 0, Conc: 1, FlowsPerSec: 50},
		{LatencyMS: 0, Conc: 16, FlowsPerSec: 200},
		{LatencyMS: 0, Conc: 64, FlowsPerSec: 100},
		{LatencyMS: 50, Conc: 64, FlowsPerSec: 300},
	}}
	guard := &summary{NProc: 2, Runs: []summaryRun{
		{LatencyMS: 0, Conc: 1, FlowsPerSec: 120, CPUPerFlow: ms, AppCPU: ms / 2, PiCPU: ms, LoadgenCPU: 2 * ms},
		// 1 + 1 + 2 ms per flow besides the guard: at most 2000/4 = 500 flows/s.
		{LatencyMS: 0, Conc: 16, FlowsPerSec: 400, CPUPerFlow: ms, AppCPU: ms, PiCPU: ms, LoadgenCPU: 2 * ms},
		{LatencyMS: 0, Conc: 64, FlowsPerSec: 400, CPUPerFlow: ms, AppCPU: ms, PiCPU: ms, LoadgenCPU: 2 * ms},
		{LatencyMS: 50, Conc: 64, FlowsPerSec: 400, CPUPerFlow: ms, AppCPU: ms, PiCPU: ms, LoadgenCPU: 2 * ms},
	}}
	rows := ceilingRows(guard, node)
	require.Len(t, rows, 3, "the 0 ms rows only")
	assert.Equal(t, 3500*time.Microsecond, rows[0].others)
	r16, r64 := rows[1], rows[2]
	assert.Equal(t, 4*ms, r16.others)
	assert.InDelta(t, 500.0, r16.free, 1e-9)
	assert.InDelta(t, 400.0, r16.withGuard, 1e-9) // 2000 / (4 + 1)
	assert.InDelta(t, 600.0, r16.target, 1e-9)
	assert.True(t, r16.unreachable(), "3 × 200 = 600 > 500")
	assert.False(t, r64.unreachable(), "3 × 100 = 300 < 500")
	assert.Equal(t, "Is 3x Node's flows/s within this machine's reach, even for a server of zero CPU? "+
		"16 flows: no, 3x Node is 600.0/s and the ceiling 500.0/s. 64 flows: yes, 3x Node is 300.0/s and the ceiling 500.0/s.",
		ceilingVerdict(rows))

	var out bytes.Buffer
	printComparison(&out, guard, node, nil, nil, 0)
	s := out.String()
	assert.Contains(t, s, "#### What this machine allows")
	assert.Regexp(t, `\| 16 +\| 2\.00 +\| 1\.00 +\| 1\.00 +\| 4\.00 +\| 500\.0 +\| 400\.0 +\| 400\.0 +\| 600\.0 +\| above the ceiling: out of reach here \|`, s)
	assert.Regexp(t, `\| 64 +\| .*\| 300\.0 +\| below the ceiling +\|`, s)
	assert.Contains(t, s, "- Is 3x Node's flows/s within this machine's reach")
	assert.Contains(t, s, "at least 3x Node's: **MISSED** (16 flows 2.00x)", "the measured verdict stays")
	assert.NotContains(t, s, "was not measured")

	// Without the fake Pi's CPU the table says so, and the ceiling omits it.
	for i := range guard.Runs {
		guard.Runs[i].PiCPU = 0
	}
	rows = ceilingRows(guard, node)
	assert.InDelta(t, 2000.0/3, rows[1].free, 1e-9)
	out.Reset()
	printComparison(&out, guard, node, nil, nil, 0)
	assert.Contains(t, out.String(), "The fake Pi's CPU was not measured (payments -pi-pid)")
}
