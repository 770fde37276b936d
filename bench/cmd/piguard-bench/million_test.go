package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caddy-pi-guard/caddy-pi-guard/piclient/pitest"
)

func TestCountRecords(t *testing.T) {
	root := t.TempDir()
	p, o, err := countRecords(root, cutoffs{})
	require.NoError(t, err, "no pi_guard directory yet")
	assert.Zero(t, p.files+o.files)

	write := func(rel string, size int) {
		full := filepath.Join(root, rel)
		require.NoError(t, os.MkdirAll(filepath.Dir(full), 0o755))
		require.NoError(t, os.WriteFile(full, []byte(strings.Repeat("x", size)), 0o644))
	}
	write("pi_guard/aaa/payments/p1.json", 100)
	write("pi_guard/aaa/payments/p2.json", 5000)
	write("pi_guard/aaa/payments/p3.json.tmp", 10) // not a record, but on disk
	write("pi_guard/aaa/owed/p4.json", 100)
	write("pi_guard/bbb/payments/p5.json", 100)
	write("pi_guard/aaa/locks/p1", 10) // neither
	old := time.Now().Add(-time.Hour)
	require.NoError(t, os.Chtimes(filepath.Join(root, "pi_guard/aaa/payments/p1.json"), old, old))
	older := time.Now().Add(-2 * time.Hour)
	require.NoError(t, os.Chtimes(filepath.Join(root, "pi_guard/bbb/payments/p5.json"), older, older))
	require.NoError(t, os.Chtimes(filepath.Join(root, "pi_guard/aaa/payments/p3.json.tmp"), older, older))
	p, o, err = countRecords(root, cutoffs{expired: time.Now().Add(-30 * time.Minute), overdue: time.Now().Add(-90 * time.Minute)})
	require.NoError(t, err)
	assert.Equal(t, 3, p.files)
	assert.Equal(t, 2, p.expired, "p1 and p5; not the temporary file")
	assert.Equal(t, 1, p.overdue, "p5")
	assert.Equal(t, 1, o.files)
	assert.Zero(t, o.expired)
	// Every file takes at least one block; the 5000-byte one more than one
	// 4 KiB block, and the directories count too.
	assert.GreaterOrEqual(t, p.bytes, int64(5000+3*100))
	assert.Positive(t, o.bytes)
}

// TestCountRecordsInSegments: each payment's line of the highest version
// counts once, as delivered or owed, by its "updated" time.
func TestCountRecordsInSegments(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "pi_guard", "aaa", "log")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	old := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339Nano)
	now := time.Now().UTC().Format(time.RFC3339Nano)
	line := func(id string, version int, state, updated string) string {
		return fmt.Sprintf(`{"payment_id":%q,"delivery":{"state":%q},"updated":%q,"version":%d}`+"\n", id, state, updated, version)
	}
	first := line("p1", 1, "pending", old) + line("p1", 2, "delivered", old) + line("p2", 1, "pending", now)
	second := line("p3", 1, "delivered", now) + line("p2", 1, "pending", now) + "\x00\x00" // a copy; a preallocated tail
	require.NoError(t, os.WriteFile(filepath.Join(dir, "00000000000000000001-1-a.seg"), []byte(first), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "00000000000000000002-1-b.seg"), []byte(second), 0o644))
	p, o, err := countRecords(root, cutoffs{expired: time.Now().Add(-30 * time.Minute)})
	require.NoError(t, err)
	assert.Equal(t, 2, p.files, "p1 (its delivery), p3")
	assert.Equal(t, 1, p.expired, "p1")
	assert.Equal(t, 1, o.files, "p2, counted once")
	assert.Positive(t, p.bytes)
}

func TestDoneAt(t *testing.T) {
	s := []point{{0, 0}, {10 * time.Second, 100}, {20 * time.Second, 300}}
	assert.InDelta(t, 0, doneAt(s, -time.Second), 1e-9)
	assert.InDelta(t, 50, doneAt(s, 5*time.Second), 1e-9)
	assert.InDelta(t, 200, doneAt(s, 15*time.Second), 1e-9)
	assert.InDelta(t, 300, doneAt(s, time.Minute), 1e-9)
	assert.InDelta(t, 0, doneAt(nil, time.Second), 1e-9)
}

func TestMillionVerdict(t *testing.T) {
	rows := []millionRow{
		{done: 1000, rss: 100 << 20},
		{done: 2000, rss: 110 << 20},
		{done: 3000, rss: 121 << 20, payments: dirUsage{files: 2500, bytes: 10 << 20, overdue: 710}, owed: dirUsage{files: 10}},
	}
	// 10 flows/s for 300 s: the last 3 minutes (2m retention + 1m slack) hold 1800.
	series := []point{{0, 0}, {300 * time.Second, 3000}}
	v := millionVerdict(rows, series, 2*time.Minute, time.Minute, 2000)
	assert.Equal(t, "Verdict: Caddy's RSS was 110.0 MiB after 2000 flows and 121.0 MiB after 3000 (+11.0 MiB, +10%). "+
		"2510 records on disk at the end (10.0 MiB). Retention 2m0s plus 1m0s (an expiry span and a sweep interval) allows about 1800, "+
		"the flows of the last 3m0s. 710 records are older than that: the sweep is not keeping up.", v)

	rows[2].payments.files, rows[2].payments.overdue = 1700, 0
	v = millionVerdict(rows, series, 2*time.Minute, time.Minute, 0)
	assert.Contains(t, v, "RSS was 100.0 MiB after 1000 flows", "no warm-up: the first row")
	assert.True(t, strings.HasSuffix(v, "allows about 1800, the flows of the last 3m0s. No record is older than that: the sweep keeps up."), v)

	v = millionVerdict(rows, series, 5*time.Minute, time.Minute, 0)
	assert.True(t, strings.HasSuffix(v, "allows about 3000, the flows of the last 6m0s. "+
		"The run lasted 5m0s, less than that: it cannot show whether the sweep keeps up."), v)

	rows[2].rss = -1
	v = millionVerdict(rows, series, 0, time.Minute, 0)
	assert.Equal(t, "Verdict: 1710 records on disk at the end (10.0 MiB).", v)
}

func TestHeapInUse(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/debug/vars" {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte(`{"cmdline": ["caddy"], "memstats": {"HeapAlloc": 1, "HeapInuse": 8388608, "NumGC": 3}}`))
	}))
	defer srv.Close()
	got, err := heapInUse(context.Background(), srv.Client(), srv.URL)
	require.NoError(t, err)
	assert.Equal(t, int64(8<<20), got)
	_, err = heapInUse(context.Background(), srv.Client(), srv.URL+"/nope")
	assert.Error(t, err)
}

// A stand-in for the guard: approves and completes at the fake Pi, and
// keeps one record per completed payment under root, as pi_guard does.
func standIn(t *testing.T, pi *pitest.Server, root string) *httptest.Server {
	dir := filepath.Join(root, "pi_guard", "k", "payments")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct{ PaymentID, Txid string }
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		call := pi.URL + "/payments/" + body.PaymentID + "/approve"
		payload := ""
		if r.URL.Path == "/payments/complete" {
			call = pi.URL + "/payments/" + body.PaymentID + "/complete"
			payload = `{"txid":"` + body.Txid + `"}`
		}
		req, _ := http.NewRequest(http.MethodPost, call, strings.NewReader(payload))
		req.Header.Set("Authorization", "Key "+pi.APIKey)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		drain(resp)
		if resp.StatusCode != http.StatusOK {
			http.Error(w, resp.Status, http.StatusBadGateway)
			return
		}
		if r.URL.Path == "/payments/complete" {
			_ = os.WriteFile(filepath.Join(dir, body.PaymentID+".json"), []byte("{}"), 0o644)
		}
	}))
}

func TestMillionCommand(t *testing.T) {
	pi := pitest.NewServer()
	defer pi.Close()
	root := t.TempDir()
	guard := standIn(t, pi, root)
	defer guard.Close()
	vars := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"memstats": {"HeapInuse": 1048576}}`))
	}))
	defer vars.Close()

	var out bytes.Buffer
	err := million(t.Context(), []string{"-guard", guard.URL, "-fakepi", strings.TrimSuffix(pi.URL, "/v2"),
		"-flows", "50", "-every", "20", "-concurrency", "4", "-pid", fmt.Sprint(os.Getpid()),
		"-admin", vars.URL, "-storage", root, "-retention", "1h"}, &out)
	require.NoError(t, err)
	s := out.String()
	assert.Contains(t, s, "### 50 payment flows at 4 in flight")
	// Rows at 20, 40 and the end (50); the records are counted after.
	assert.Regexp(t, `\| 20 +\| 0 +\| \d+ +\| [0-9.]+ +\| [0-9.]+ +\| 1\.0 +\| (2\d|3\d|4\d|50) +\| 0 +\| 0 +\| [0-9.]+ +\| – +\|`, s)
	assert.Regexp(t, `\| 50 +\| 0 +\| \d+ +\| [0-9.]+ +\| [0-9.]+ +\| 1\.0 +\| 50 +\| 0 +\| 0 +\|`, s)
	assert.Contains(t, s, "50 records on disk at the end")
	assert.Contains(t, s, "Retention 1h0m0s plus 16m0s (an expiry span and a sweep interval) allows about 50")
	assert.Contains(t, s, "an expiry file (one per 15m0s)")
	assert.Equal(t, 4, strings.Count(s, "\n| "), "the header and three rows")

	// A guard that refuses everything stops the run after -max-errors.
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no", http.StatusForbidden)
	}))
	defer bad.Close()
	err = million(t.Context(), []string{"-guard", bad.URL, "-fakepi", strings.TrimSuffix(pi.URL, "/v2"),
		"-flows", "10", "-every", "5", "-concurrency", "2", "-max-errors", "3"}, io.Discard)
	assert.ErrorContains(t, err, "403")
}

func TestExpirySpanAsTheGuard(t *testing.T) {
	assert.Equal(t, time.Minute, expirySpan(2*time.Minute))
	assert.Equal(t, 60*time.Second, expirySpan(4*time.Minute+2*time.Second))
	assert.Equal(t, 75*time.Second, expirySpan(5*time.Minute))
	assert.Equal(t, time.Hour, expirySpan(720*time.Hour))
}
