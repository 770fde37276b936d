// Package loadgen is the small closed-loop load generator behind `make bench`:
// a fixed number of workers, each repeating one operation (an HTTP request or
// a whole payment flow) until a deadline, with every latency recorded.
//
// Latencies are kept exactly (a slice of durations, sorted once for the
// percentiles), which is affordable for the few hundred thousand samples a
// benchmark round produces and needs no bucket approximation.
package loadgen

import (
	"context"
	"fmt"
	"math"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// Samples is a set of latencies. The zero value is empty and ready to use; it
// is not safe for concurrent use (give each worker its own and Merge them).
type Samples struct {
	d      []time.Duration
	sorted bool
}

// Add records one latency.
func (s *Samples) Add(d time.Duration) {
	s.d = append(s.d, d)
	s.sorted = false
}

// Merge adds every latency of o.
func (s *Samples) Merge(o *Samples) {
	s.d = append(s.d, o.d...)
	s.sorted = false
}

// Len is the number of latencies recorded.
func (s *Samples) Len() int { return len(s.d) }

// Quantile returns the q-quantile (0 ≤ q ≤ 1) by the nearest-rank method: the
// smallest recorded latency that at least q of the samples do not exceed. It
// is 0 for an empty set.
func (s *Samples) Quantile(q float64) time.Duration {
	if len(s.d) == 0 {
		return 0
	}
	if !s.sorted {
		slices.Sort(s.d)
		s.sorted = true
	}
	rank := int(math.Ceil(q * float64(len(s.d))))
	rank = min(max(rank, 1), len(s.d))
	return s.d[rank-1]
}

// Mean is the arithmetic mean, 0 for an empty set.
func (s *Samples) Mean() time.Duration {
	if len(s.d) == 0 {
		return 0
	}
	var sum time.Duration
	for _, d := range s.d {
		sum += d
	}
	return sum / time.Duration(len(s.d))
}

// Max is the largest latency, 0 for an empty set.
func (s *Samples) Max() time.Duration { return s.Quantile(1) }

// Result is what one closed-loop run measured.
type Result struct {
	Ops      int           // operations that succeeded
	Errors   int           // operations that failed
	Elapsed  time.Duration // from the first start to the last finish
	Lat      Samples       // latency of every successful operation
	FirstErr error         // the first failure, for the report
}

// Rate is successful operations per second.
func (r *Result) Rate() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Ops) / r.Elapsed.Seconds()
}

// Op is one operation by worker number worker (0 ≤ worker < workers). Run
// times every call; an Op that needs finer timings (one per request of a
// payment flow) keeps its own Samples per worker, indexed by worker, so that
// no lock is taken on the measured path.
type Op func(ctx context.Context, worker int) error

// Run starts workers goroutines that each call op back to back until d has
// passed, and returns the merged result. An operation in flight at the
// deadline is allowed to finish (it is never cancelled, so no half-done work
// is counted as an error); Elapsed covers it.
func Run(ctx context.Context, workers int, d time.Duration, op Op) *Result {
	type local struct {
		ops, errs int
		lat       Samples
		first     error
	}
	locals := make([]local, workers)
	start := time.Now()
	deadline := start.Add(d)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			l := &locals[w]
			for ctx.Err() == nil && time.Now().Before(deadline) {
				t0 := time.Now()
				err := op(ctx, w)
				if err != nil {
					l.errs++
					if l.first == nil {
						l.first = err
					}
					continue
				}
				l.lat.Add(time.Since(t0))
				l.ops++
			}
		})
	}
	wg.Wait()
	res := &Result{Elapsed: time.Since(start)}
	for i := range locals {
		l := &locals[i]
		res.Ops += l.ops
		res.Errors += l.errs
		res.Lat.Merge(&l.lat)
		if res.FirstErr == nil {
			res.FirstErr = l.first
		}
	}
	return res
}

// NewClient is an HTTP client for conns concurrent keep-alive connections to
// one host, without proxies, compression or redirects, so that every request
// measures the server and not the client's setup.
func NewClient(conns int) *http.Client {
	t := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        conns * 2,
		MaxIdleConnsPerHost: conns * 2,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}
	return &http.Client{
		Transport:     t,
		Timeout:       30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// Ms formats a duration in milliseconds with a precision that suits it.
func Ms(d time.Duration) string {
	ms := float64(d) / float64(time.Millisecond)
	switch {
	case ms < 1:
		return fmt.Sprintf("%.3f", ms)
	case ms < 100:
		return fmt.Sprintf("%.2f", ms)
	default:
		return fmt.Sprintf("%.0f", ms)
	}
}

// Table formats a Markdown table whose columns are padded so that it also
// reads well as plain text.
func Table(header []string, rows [][]string) string {
	width := make([]int, len(header))
	for i, h := range header {
		width[i] = len([]rune(h))
	}
	for _, r := range rows {
		for i, c := range r {
			if i < len(width) {
				width[i] = max(width[i], len([]rune(c)))
			}
		}
	}
	var b strings.Builder
	line := func(cells []string) {
		b.WriteString("|")
		for i := range width {
			c := ""
			if i < len(cells) {
				c = cells[i]
			}
			fmt.Fprintf(&b, " %s%s |", c, strings.Repeat(" ", width[i]-len([]rune(c))))
		}
		b.WriteString("\n")
	}
	line(header)
	b.WriteString("|")
	for _, w := range width {
		b.WriteString(strings.Repeat("-", w+2) + "|")
	}
	b.WriteString("\n")
	for _, r := range rows {
		line(r)
	}
	return b.String()
}
