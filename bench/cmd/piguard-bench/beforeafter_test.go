package main

import (
	"bytes"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// baFiles writes three rounds (before first, after first, before first) of
// the two builds at 16 and 64 flows, the Go floor and a passthrough summary,
// and returns the beforeafter flags that read them.
func baFiles(t *testing.T, before, after [3][2]time.Duration, proxy time.Duration) []string {
	t.Helper()
	dir := t.TempDir()
	write := func(file string, v any) string {
		p := filepath.Join(dir, file)
		require.NoError(t, writeJSON(p, v))
		return p
	}
	side := func(name string, round int, cpu [2]time.Duration, rate float64) string {
		return write(fmt.Sprintf("%s-%d.json", name, round+1), summary{Name: name, Runs: []summaryRun{
			{LatencyMS: 0, Conc: 16, FlowsPerSec: rate, CPUPerFlow: cpu[0]},
			{LatencyMS: 0, Conc: 64, FlowsPerSec: rate + 100, CPUPerFlow: cpu[1]},
		}})
	}
	var args []string
	for i := range 3 {
		b, a := side(buildBefore, i, before[i], 300+float64(i)), side(buildAfter, i, after[i], 400+float64(i))
		if i%2 == 1 {
			b, a = a, b
		}
		args = append(args, "-round", b+","+a)
	}
	floor := write("gofloor.json", summary{Name: "gofloor", Runs: []summaryRun{
		{LatencyMS: 0, Conc: 16, FlowsPerSec: 500, CPUPerFlow: 1200 * us},
		{LatencyMS: 0, Conc: 64, FlowsPerSec: 550, CPUPerFlow: 600 * us},
		{LatencyMS: 50, Conc: 16, FlowsPerSec: 100, CPUPerFlow: 1300 * us},
	}})
	pt := write("passthrough.json", passthroughSummary{Path: "/hello", CPUMeasured: true,
		Guard: passthroughConfig{Name: "pi_guard + reverse_proxy", Requests: 1000, CPUPerRequest: 185 * us},
		Plain: passthroughConfig{Name: "reverse_proxy alone", Requests: 1000, CPUPerRequest: proxy}})
	return append(args, "-gofloor", floor, "-passthrough", pt, "-before-rev", "7401620 (HEAD~3)", "-after-rev", "4a0e028")
}

func TestBeforeAfter(t *testing.T) {
	// At 16 flows: before 2.70 ms (median of 2.6, 2.8, 2.7), own 2.70 − 1.20 −
	// 2 × 0.175 = 1.15 ms; after 1.75 ms, own 0.200 ms: 0.17, halved.
	// At 64 flows: before 1.75 ms, own 1.75 − 0.6 − 0.35 = 0.800 ms; after
	// 1.40 ms, own 0.450 ms: 0.56, not halved.
	before := [3][2]time.Duration{{2600 * us, 1750 * us}, {2800 * us, 1800 * us}, {2700 * us, 1700 * us}}
	after := [3][2]time.Duration{{1700 * us, 1400 * us}, {1800 * us, 1450 * us}, {1750 * us, 1350 * us}}
	var out bytes.Buffer
	require.NoError(t, beforeAfter(baFiles(t, before, after, 175*us), &out))
	s := out.String()
	assert.Contains(t, s, "### Before 7401620 (HEAD~3), after 4a0e028\n")
	assert.Contains(t, s, "in 3 rounds of one payments run against each build")
	assert.Regexp(t, `\| 16 +\| 301\.0 +\| 401\.0 +\| 2\.70 \(2\.60–2\.80\) +\| 1\.75 \(1\.70–1\.80\) +\| 1\.20 +\| 0\.350 +\| – +\| 1\.15 +\| 0\.200 +\| 0\.17 +\|`, s)
	assert.Regexp(t, `\| 64 +\| 401\.0 +\| 501\.0 +\| 1\.75 \(1\.70–1\.80\) +\| 1\.40 \(1\.35–1\.45\) +\| 0\.600 +\| 0\.350 +\| – +\| 0\.800 +\| 0\.450 +\| 0\.56 +\|`, s)
	assert.Contains(t, s, "- The guard's own cost per payment at most half of before's at 16 and 64 flows (issue 22): **MISSED** (after/before 16 flows 0.17, 64 flows 0.56).")
	// Per round, in the order they ran.
	assert.Regexp(t, `\| 1 +\| before, after +\| 16 +\| 300\.0 +\| 400\.0 +\| 2\.60 +\| 1\.70 +\| 0\.65 +\|`, s)
	assert.Regexp(t, `\| 2 +\| after, before +\| 64 +\| 401\.0 +\| 501\.0 +\| 1\.80 +\| 1\.45 +\| 0\.81 +\|`, s)
	assert.Regexp(t, `\| 3 +\| before, after +\| 64 +\|`, s)
	assert.NotContains(t, s, "lost in the noise")
	assert.NotContains(t, s, "versions of Caddy")
	assert.NotContains(t, s, "instead of the 2 posts", "no posts measured: nothing to compare with")

	// The two posts proxied measured: they are taken off instead of 2 × GET.
	// At 16 flows 0.450 ms: before own 2.70 − 1.20 − 0.45 = 1.05, after 0.100:
	// 0.10; at 64 flows 0.500 ms: 0.650 and 0.300: 0.46.
	dir := t.TempDir()
	posts := filepath.Join(dir, "proxy.json")
	require.NoError(t, writeJSON(posts, summary{Name: "proxy", Runs: []summaryRun{
		{LatencyMS: 0, Conc: 16, CPUPerFlow: 450 * us}, {LatencyMS: 0, Conc: 64, CPUPerFlow: 500 * us},
	}}))
	out.Reset()
	require.NoError(t, beforeAfter(append(baFiles(t, before, after, 175*us), "-proxyflows", posts), &out))
	s = out.String()
	assert.Regexp(t, `\| 16 +\| .*\| 1\.20 +\| 0\.350 +\| 0\.450 +\| 1\.05 +\| 0\.100 +\| 0\.10 +\|`, s)
	assert.Regexp(t, `\| 64 +\| .*\| 0\.600 +\| 0\.350 +\| 0\.500 +\| 0\.650 +\| 0\.300 +\| 0\.46 +\|`, s)
	assert.Contains(t, s, "(issue 22): met (after/before 16 flows 0.10, 64 flows 0.46).")
	assert.Contains(t, s, "(the yardstick of earlier runs), own before → after and after/before: 16 flows 1.15 → 0.200 ms, 0.17; 64 flows 0.800 → 0.450 ms, 0.56.")

	// Halved at both: met.
	after[0][1], after[1][1], after[2][1] = 1300*us, 1350*us, 1340*us // own 0.390 ms of 0.800: 0.49
	out.Reset()
	require.NoError(t, beforeAfter(baFiles(t, before, after, 175*us), &out))
	assert.Contains(t, out.String(), "(issue 22): met (after/before 16 flows 0.17, 64 flows 0.49).")

	// Before's own cost lost in noise at 64 flows: no ratio, no verdict; and a
	// different Caddy in the two builds is pointed out.
	out.Reset()
	require.NoError(t, beforeAfter(append(baFiles(t, before, after, 600*us), "-before-caddy", "v2.10.2", "-after-caddy", "v2.11.9"), &out))
	s = out.String()
	assert.Regexp(t, `\| 64 +\| .*\| 1\.20 +\| – +\| −0\.050 +\| −0\.460 +\| – +\|`, s)
	assert.Contains(t, s, "(issue 22): cannot tell (after/before 16 flows -2.17, 64 flows –).")
	assert.Contains(t, s, "- 64 flows: before's CPU per flow is no more than the Go floor and the proxying")
	assert.Contains(t, s, "different versions of Caddy (before v2.10.2, after v2.11.9)")
}

func TestBeforeAfterRows(t *testing.T) {
	b := &summary{Name: buildBefore, Runs: []summaryRun{
		{LatencyMS: 0, Conc: 16, CPUPerFlow: 2 * time.Millisecond, Errors: 2},
		{LatencyMS: 50, Conc: 16, CPUPerFlow: 9 * time.Millisecond},
		{LatencyMS: 0, Conc: 32, CPUPerFlow: 2 * time.Millisecond},
	}}
	a := &summary{Name: buildAfter, Runs: []summaryRun{{LatencyMS: 0, Conc: 16, CPUPerFlow: time.Millisecond}}}
	floor := &summary{Runs: []summaryRun{{LatencyMS: 0, Conc: 16, CPUPerFlow: 500 * us}}}
	rows := baRows([]baRound{{first: buildBefore, before: b, after: a}}, []*summary{floor}, 100*us, nil)
	require.Len(t, rows, 2, "the 0 ms runs, in the first round's order")
	r16, r32 := rows[0], rows[1]
	assert.Equal(t, 16, r16.conc)
	assert.Equal(t, 1300*us, r16.own(r16.before))
	assert.Equal(t, 300*us, r16.own(r16.after))
	q, ok := r16.ratio()
	require.True(t, ok)
	assert.InDelta(t, 3.0/13, q, 1e-9)
	assert.Equal(t, 2, r16.before.errors)
	assert.Zero(t, r32.after.rounds, "after has no run at 32 flows")
	assert.False(t, r32.known(), "no Go floor and no after at 32 flows")
	_, ok = r32.ratio()
	assert.False(t, ok)

	var out bytes.Buffer
	printBeforeAfter(&out, "a", "b", []baRound{{first: buildBefore, before: b, after: a}}, rows, "")
	s := out.String()
	assert.Contains(t, s, "- 16 flows: before had 2 failed flows over its rounds")
	assert.Contains(t, s, "- 32 flows: after has a run in 0 of the 1 rounds only.")
	assert.Contains(t, s, "- 32 flows: the Go floor has no run at 0 ms with 32 flows in flight: no own cost.")
	assert.Contains(t, s, "(issue 22): met (after/before 16 flows 0.23).", "32 flows is not in the target")
}

// TestBeforeAfterYardsticksMeasuredInEveryRound: the Go floor and the posts
// through reverse_proxy alone, each run several times, are taken off as
// their medians, and their ranges are shown.
func TestBeforeAfterYardsticksMeasuredInEveryRound(t *testing.T) {
	before := [3][2]time.Duration{{2600 * us, 1750 * us}, {2800 * us, 1800 * us}, {2700 * us, 1700 * us}}
	after := [3][2]time.Duration{{1700 * us, 1400 * us}, {1800 * us, 1450 * us}, {1750 * us, 1350 * us}}
	dir := t.TempDir()
	args := baFiles(t, before, after, 175*us) // with one Go floor: 1.20 and 0.600 ms
	for i, cpu := range [][2]time.Duration{{1000 * us, 500 * us}, {1100 * us, 900 * us}} {
		p := filepath.Join(dir, fmt.Sprintf("gofloor-%d.json", i))
		require.NoError(t, writeJSON(p, summary{Name: "gofloor", Runs: []summaryRun{
			{LatencyMS: 0, Conc: 16, CPUPerFlow: cpu[0]}, {LatencyMS: 0, Conc: 64, CPUPerFlow: cpu[1]},
		}}))
		args = append(args, "-gofloor", p)
	}
	for i, cpu := range [][2]time.Duration{{450 * us, 500 * us}, {350 * us, 300 * us}, {400 * us, 700 * us}} {
		p := filepath.Join(dir, fmt.Sprintf("proxy-%d.json", i))
		require.NoError(t, writeJSON(p, summary{Name: "proxy", Runs: []summaryRun{
			{LatencyMS: 0, Conc: 16, CPUPerFlow: cpu[0]}, {LatencyMS: 0, Conc: 64, CPUPerFlow: cpu[1]},
		}}))
		args = append(args, "-proxyflows", p)
	}
	var out bytes.Buffer
	require.NoError(t, beforeAfter(args, &out))
	s := out.String()
	// 16 flows: floor median of 1.20, 1.00, 1.10 = 1.10; posts median of
	// 0.45, 0.35, 0.40 = 0.40: before own 2.70 − 1.50 = 1.20, after 1.75 −
	// 1.50 = 0.250, 0.21. 64 flows: floor 0.600 (0.5–0.9), posts 0.500
	// (0.3–0.7): 0.650 and 0.300, 0.46.
	assert.Regexp(t, `\| 16 +\| .*\| 1\.10 \(1\.00–1\.20\) +\| 0\.350 +\| 0\.400 \(0\.350–0\.450\) +\| 1\.20 +\| 0\.250 +\| 0\.21 +\|`, s)
	assert.Regexp(t, `\| 64 +\| .*\| 0\.600 \(0\.500–0\.900\) +\| 0\.350 +\| 0\.500 \(0\.300–0\.700\) +\| 0\.650 +\| 0\.300 +\| 0\.46 +\|`, s)
	assert.Contains(t, s, "(issue 22): met (after/before 16 flows 0.21, 64 flows 0.46).")
}

func TestBeforeAfterErrors(t *testing.T) {
	var d [3][2]time.Duration
	for i := range d {
		d[i] = [2]time.Duration{time.Millisecond, time.Millisecond}
	}
	args := baFiles(t, d, d, 100*us)
	var out bytes.Buffer

	// A round of two befores.
	bad := append([]string{}, args...)
	bad[1] = bad[1][:len(bad[1])-len("after-1.json")] + "before-3.json"
	assert.ErrorContains(t, beforeAfter(bad, &out), `round 1: `)
	assert.ErrorContains(t, beforeAfter(bad, &out), `a round needs one summary named "before" and one named "after"`)

	// One file where a round needs two.
	bad[1] = "x.json"
	assert.ErrorContains(t, beforeAfter(bad, &out), "want two summary files")

	// The proxy's CPU not measured.
	dir := t.TempDir()
	pt := filepath.Join(dir, "pt.json")
	require.NoError(t, writeJSON(pt, passthroughSummary{Plain: passthroughConfig{Requests: 10}}))
	bad = append(append([]string{}, args...), "-passthrough", pt)
	assert.ErrorContains(t, beforeAfter(bad, &out), "was not measured (passthrough -pid)")

	assert.ErrorContains(t, beforeAfter([]string{"-gofloor", "f.json"}, &out), "required")
}
