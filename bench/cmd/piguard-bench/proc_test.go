package main

import (
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseStatCPU(t *testing.T) {
	// A command name with spaces and a parenthesis must not shift the fields.
	line := "4242 (we ird) (x) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 37 0 0 20 0 12 0 100 1000 200 18446744073709551615\n"
	got, err := parseStatCPU([]byte(line))
	require.NoError(t, err)
	assert.Equal(t, 287*clockTick, got)

	_, err = parseStatCPU([]byte("12 (short) S 1 2"))
	assert.Error(t, err)
	_, err = parseStatCPU([]byte("no command"))
	assert.Error(t, err)
}

func TestParseVmRSS(t *testing.T) {
	got, err := parseVmRSS([]byte("Name:\tcaddy\nVmHWM:\t  9000 kB\nVmRSS:\t   68424 kB\nRssAnon:\t 1 kB\n"))
	require.NoError(t, err)
	assert.Equal(t, int64(68424<<10), got)
	_, err = parseVmRSS([]byte("Name:\tx\n"))
	assert.Error(t, err)
}

func TestProcSelf(t *testing.T) {
	pid := os.Getpid()
	cpu0, err := procCPU(pid)
	require.NoError(t, err)
	for start := time.Now(); time.Since(start) < 60*time.Millisecond; {
	}
	cpu1, err := procCPU(pid)
	require.NoError(t, err)
	assert.GreaterOrEqual(t, cpu1, cpu0)
	rss, err := procRSS(pid)
	require.NoError(t, err)
	assert.Greater(t, rss, int64(1<<20))
}

func TestUsageMeasuresTheLoadGenerator(t *testing.T) {
	pid := os.Getpid()
	u := startUsage(t.Context(), pid, 0, pid)
	// Spin until this process used 30 ms of CPU (the CPUs may be shared).
	c0, err := selfCPU()
	require.NoError(t, err)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		if c, err := selfCPU(); err == nil && c-c0 >= 30*time.Millisecond {
			break
		}
	}
	got, err := u.finish()
	require.NoError(t, err)
	assert.GreaterOrEqual(t, got.selfCPU, 30*time.Millisecond, "the window covers the busy loop")
	assert.Zero(t, got.appCPU, "no -app-pid")
	assert.GreaterOrEqual(t, got.piCPU, time.Duration(0))
	assert.Positive(t, got.rssMax)

	_, err = startUsage(t.Context(), 0, 0, 1<<30).finish()
	assert.Error(t, err, "a -pi-pid that does not exist")
}

func TestCPUPerRequest(t *testing.T) {
	if got := cpuPerRequest(1460*time.Millisecond, 10000); got != "146" {
		t.Errorf("cpuPerRequest(1.46s, 10000) = %q, want 146 (µs)", got)
	}
	if got := cpuPerRequest(time.Second, 0); got != "–" {
		t.Errorf("cpuPerRequest with no requests = %q, want –", got)
	}
}
