// Package guardlog reads the pi_guard handler's per-request log lines ("payment
// step", logger http.handlers.pi_guard) from a Caddy log written as JSON, so
// that a benchmark can measure the time the guard itself adds to a payment
// request: its duration minus the time it spent waiting for Pi.
package guardlog

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"
)

// Logger and Message identify the guard's line for a request it handled.
const (
	Logger  = "http.handlers.pi_guard"
	Message = "payment step"
)

// Step is one guarded request as the guard logged it.
type Step struct {
	Phase     string
	PaymentID string
	Outcome   string
	PiCalls   int
	// Duration is the guard's time from its start until it was ready to
	// forward (or answer); PiLatency the time it spent in Pi API calls, on
	// either side of the forwarding.
	Duration  time.Duration
	PiLatency time.Duration
	// Total is the whole request in the guard, forwarding included, when
	// logged (field "total"); Upstream the part spent in the next handler
	// (the app), when logged (field "upstream").
	Total, Upstream       time.Duration
	HasTotal, HasUpstream bool
}

// Added is the time the guard added on top of Pi's (and the app's). With the
// upstream's time logged it is exact: Total − PiLatency − Upstream. Without
// it, it is Duration − PiLatency, exact only when every Pi call was made
// before the guard forwarded the request (negative when one came after).
func (s Step) Added() time.Duration {
	if s.HasTotal && s.HasUpstream {
		return s.Total - s.PiLatency - s.Upstream
	}
	return s.Duration - s.PiLatency
}

// TotalMinusPi is the whole request in the guard minus Pi's time: the guard's
// own time plus the app's, an upper bound of Added. Without a logged total it
// is Duration − PiLatency.
func (s Step) TotalMinusPi() time.Duration {
	if !s.HasTotal {
		return s.Duration - s.PiLatency
	}
	return s.Total - s.PiLatency
}

// line is the part of a Caddy JSON log line that matters here.
type line struct {
	Logger    string          `json:"logger"`
	Msg       string          `json:"msg"`
	Phase     string          `json:"phase"`
	PaymentID string          `json:"payment_id"`
	Outcome   string          `json:"outcome"`
	PiCalls   int             `json:"pi_calls"`
	Duration  json.RawMessage `json:"duration"`
	PiLatency json.RawMessage `json:"pi_latency"`
	Total     json.RawMessage `json:"total"`
	Upstream  json.RawMessage `json:"upstream"`
}

// Read parses every "payment step" line of the guard in r. Other lines are
// skipped; a guard line whose durations cannot be read is an error.
func Read(r io.Reader) ([]Step, error) {
	var steps []Step
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for n := 1; sc.Scan(); n++ {
		b := sc.Bytes()
		if !bytes.Contains(b, []byte(Message)) {
			continue
		}
		var l line
		if err := json.Unmarshal(b, &l); err != nil || l.Logger != Logger || l.Msg != Message {
			continue
		}
		d, err := duration(l.Duration)
		if err != nil {
			return nil, fmt.Errorf("line %d: duration: %w", n, err)
		}
		pi, err := duration(l.PiLatency)
		if err != nil {
			return nil, fmt.Errorf("line %d: pi_latency: %w", n, err)
		}
		st := Step{Phase: l.Phase, PaymentID: l.PaymentID, Outcome: l.Outcome, PiCalls: l.PiCalls, Duration: d, PiLatency: pi}
		if len(l.Total) > 0 {
			if st.Total, err = duration(l.Total); err != nil {
				return nil, fmt.Errorf("line %d: total: %w", n, err)
			}
			st.HasTotal = true
		}
		if len(l.Upstream) > 0 {
			if st.Upstream, err = duration(l.Upstream); err != nil {
				return nil, fmt.Errorf("line %d: upstream: %w", n, err)
			}
			st.HasUpstream = true
		}
		steps = append(steps, st)
	}
	return steps, sc.Err()
}

// ReadFrom parses the guard's lines of the file at path from byte offset on
// and returns the offset where it stopped (the end of the last whole line).
func ReadFrom(path string, offset int64) ([]Step, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, offset, err
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return nil, offset, err
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return nil, offset, err
	}
	if i := bytes.LastIndexByte(data, '\n'); i >= 0 {
		data = data[:i+1]
	} else {
		data = nil // no whole line yet
	}
	steps, err := Read(bytes.NewReader(data))
	return steps, offset + int64(len(data)), err
}

// duration reads a zap duration in any of Caddy's duration formats: seconds
// as a number (Caddy's default), or a Go duration string ("1.5ms").
func duration(raw json.RawMessage) (time.Duration, error) {
	if len(raw) == 0 {
		return 0, fmt.Errorf("missing")
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return 0, err
		}
		return time.ParseDuration(s)
	}
	secs, err := strconv.ParseFloat(string(raw), 64)
	if err != nil {
		return 0, err
	}
	return time.Duration(secs * float64(time.Second)), nil
}
