package loadgen

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestQuantileNearestRank(t *testing.T) {
	var s Samples
	if got := s.Quantile(0.5); got != 0 {
		t.Fatalf("empty: %v", got)
	}
	for i := 100; i >= 1; i-- { // added out of order on purpose
		s.Add(time.Duration(i) * time.Millisecond)
	}
	cases := map[float64]time.Duration{0: 1, 0.01: 1, 0.5: 50, 0.99: 99, 0.991: 100, 1: 100}
	for q, want := range cases {
		if got := s.Quantile(q); got != want*time.Millisecond {
			t.Errorf("Quantile(%v) = %v, want %v", q, got, want*time.Millisecond)
		}
	}
	if got := s.Mean(); got != 50500*time.Microsecond {
		t.Errorf("Mean = %v", got)
	}
	var o Samples
	o.Add(time.Second)
	s.Merge(&o)
	if s.Len() != 101 || s.Max() != time.Second {
		t.Errorf("after Merge: len %d max %v", s.Len(), s.Max())
	}
}

func TestRunCountsOpsAndErrorsAndStops(t *testing.T) {
	var calls atomic.Int64
	boom := errors.New("boom")
	res := Run(context.Background(), 4, 50*time.Millisecond, func(ctx context.Context, w int) error {
		if w < 0 || w >= 4 {
			t.Errorf("worker %d", w)
		}
		if calls.Add(1)%2 == 0 {
			return boom
		}
		time.Sleep(time.Millisecond)
		return nil
	})
	if res.Ops == 0 || res.Errors == 0 || int64(res.Ops+res.Errors) != calls.Load() {
		t.Fatalf("ops %d errors %d calls %d", res.Ops, res.Errors, calls.Load())
	}
	if res.Lat.Len() != res.Ops || !errors.Is(res.FirstErr, boom) {
		t.Fatalf("samples %d, first error %v", res.Lat.Len(), res.FirstErr)
	}
	if res.Elapsed < 50*time.Millisecond || res.Elapsed > 2*time.Second {
		t.Fatalf("elapsed %v", res.Elapsed)
	}
	if res.Rate() <= 0 {
		t.Fatalf("rate %v", res.Rate())
	}
}

func TestTable(t *testing.T) {
	got := Table([]string{"a", "long header"}, [][]string{{"wide cell", "1"}})
	want := "" +
		"| a         | long header |\n" +
		"|-----------|-------------|\n" +
		"| wide cell | 1           |\n"
	if got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	if !strings.HasPrefix(Ms(1500*time.Microsecond), "1.50") || Ms(250*time.Microsecond) != "0.250" {
		t.Fatalf("Ms: %s %s", Ms(1500*time.Microsecond), Ms(250*time.Microsecond))
	}
}
