package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// passthrough -summary writes each configuration's figures, which the
// beforeafter command reads back.
func TestPassthroughSummary(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("hello")) })
	guard, plain := httptest.NewServer(ok), httptest.NewServer(ok)
	t.Cleanup(guard.Close)
	t.Cleanup(plain.Close)
	p := filepath.Join(t.TempDir(), "passthrough.json")
	var out bytes.Buffer
	// This process stands in for Caddy: its CPU time is what is measured.
	require.NoError(t, passthrough(context.Background(), []string{
		"-guard", guard.URL, "-plain", plain.URL, "-conns", "2", "-rounds", "2", "-round", "100ms", "-warmup", "20ms",
		"-pid", "0", "-summary", p,
	}, &out))
	s, err := readPassthroughSummary(p)
	require.NoError(t, err)
	assert.False(t, s.CPUMeasured)
	assert.Equal(t, "/hello", s.Path)
	assert.Equal(t, 2, s.Rounds)
	assert.Equal(t, "pi_guard + reverse_proxy", s.Guard.Name)
	assert.Equal(t, "reverse_proxy alone", s.Plain.Name)
	assert.Positive(t, s.Plain.Requests)
	assert.Positive(t, s.Plain.RequestsPerSec)
	assert.Zero(t, s.Plain.Errors)
	assert.Zero(t, s.Plain.CPUPerRequest, "not measured without -pid")

	require.NoError(t, passthrough(context.Background(), []string{
		"-guard", guard.URL, "-plain", plain.URL, "-conns", "2", "-rounds", "2", "-round", "100ms", "-warmup", "20ms",
		"-pid", strconv.Itoa(os.Getpid()), "-summary", p,
	}, &out))
	s, err = readPassthroughSummary(p)
	require.NoError(t, err)
	assert.True(t, s.CPUMeasured)
	assert.Positive(t, s.Guard.Requests)
	// /proc counts CPU time in 10 ms ticks: 200 ms of requests over loopback
	// in this process spend at least one.
	assert.Positive(t, s.Guard.CPUPerRequest+s.Plain.CPUPerRequest)
}
