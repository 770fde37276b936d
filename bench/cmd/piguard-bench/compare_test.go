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
	printComparison(&out, good, node, nil, ms)
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
	printComparison(&out, &bad, node, nil, ms)
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
