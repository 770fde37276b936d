package piclient_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"runtime"
	"testing"

	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
	"github.com/caddy-pi-guard/caddy-pi-guard/piclient/pitest"
)

// The benchmarks run the guard's three calls per payment (GET /payments/{id},
// POST .../approve, POST .../complete) against pitest's fake Pi on a loopback
// keep-alive connection. The fake runs in the same process, so ns/op, B/op
// and allocs/op include its share; BenchmarkPlainHTTP makes the same calls
// with a bare net/http client and encoding/json, as the floor to compare
// the client with.
//
// Against a loopback server on a small machine, ns/op is mostly waiting for
// the other side; cpu-ns/op is the CPU time the whole process (client, fake
// and garbage collector) spent per op, which is what issue 22 is about.

// meterCPU returns a function that reports the process's CPU time per op
// since meterCPU was called.
func meterCPU(b *testing.B) func() {
	start := processCPU()
	return func() {
		if used := processCPU() - start; used > 0 && b.N > 0 {
			b.ReportMetric(float64(used.Nanoseconds())/float64(b.N), "cpu-ns/op")
		}
	}
}

// benchPayment is a payment as a shop creates it.
var benchPayment = pitest.NewPayment{Amount: "3.14", Memo: "benchmark order 1234", Metadata: []byte(`{"orderId":1234}`)}

func benchSetup(b *testing.B) (*pitest.Server, *piclient.Client) {
	b.Helper()
	s := pitest.NewServer()
	b.Cleanup(s.Close)
	c, err := piclient.New(piclient.Options{BaseURL: s.URL, APIKey: s.APIKey})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(c.CloseIdleConnections)
	return s, c
}

// approvedPayments creates n payments approved by the app and paid by the
// user's wallet, ready for Complete, and returns their ids and txids.
func approvedPayments(b *testing.B, s *pitest.Server, c *piclient.Client, n int, submit bool) (ids, txids []string) {
	b.Helper()
	ctx := context.Background()
	for range n {
		p := s.CreatePayment(benchPayment)
		ids = append(ids, p.Identifier)
		if !submit {
			continue
		}
		if _, err := c.Approve(ctx, p.Identifier); err != nil {
			b.Fatal(err)
		}
		txid, err := s.SubmitTransaction(p.Identifier)
		if err != nil {
			b.Fatal(err)
		}
		txids = append(txids, txid)
	}
	return ids, txids
}

func BenchmarkGetPayment(b *testing.B) {
	s, c := benchSetup(b)
	id := s.CreatePayment(benchPayment).Identifier
	ctx := context.Background()
	b.ReportAllocs()
	defer meterCPU(b)()
	for b.Loop() {
		p, err := c.GetPayment(ctx, id)
		if err != nil || p.Identifier != id {
			b.Fatal(p, err)
		}
	}
}

func BenchmarkApprove(b *testing.B) {
	s, c := benchSetup(b)
	ids, _ := approvedPayments(b, s, c, b.N, false)
	ctx := context.Background()
	b.ReportAllocs()
	defer meterCPU(b)()
	b.ResetTimer()
	for i := range b.N {
		p, err := c.Approve(ctx, ids[i])
		if err != nil || !p.Status.DeveloperApproved {
			b.Fatal(p, err)
		}
	}
}

func BenchmarkComplete(b *testing.B) {
	s, c := benchSetup(b)
	ids, txids := approvedPayments(b, s, c, b.N, true)
	ctx := context.Background()
	b.ReportAllocs()
	defer meterCPU(b)()
	b.ResetTimer()
	for i := range b.N {
		p, err := c.Complete(ctx, ids[i], txids[i])
		if err != nil || !p.Status.DeveloperCompleted {
			b.Fatal(p, err)
		}
	}
}

// BenchmarkPlainHTTP is the floor: the same three calls with a bare
// keep-alive net/http client, decoding with encoding/json into the struct
// and nothing else (no validation, limits, retries or error types).
func BenchmarkPlainHTTP(b *testing.B) {
	s := pitest.NewServer()
	b.Cleanup(s.Close)
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 64
	hc := &http.Client{Transport: t}
	b.Cleanup(hc.CloseIdleConnections)
	call := func(method, url string, body []byte) piclient.Payment {
		var rd io.Reader
		if body != nil {
			rd = bytes.NewReader(body)
		}
		req, err := http.NewRequest(method, url, rd)
		if err != nil {
			b.Fatal(err)
		}
		req.Header.Set("Authorization", "Key "+s.APIKey)
		req.Header.Set("Accept", "application/json")
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := hc.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		var p piclient.Payment
		if err := json.NewDecoder(resp.Body).Decode(&p); err != nil || resp.StatusCode != http.StatusOK {
			b.Fatal(resp.Status, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		return p
	}
	b.Run("get", func(b *testing.B) {
		id := s.CreatePayment(benchPayment).Identifier
		b.ReportAllocs()
		defer meterCPU(b)()
		for b.Loop() {
			if p := call(http.MethodGet, s.URL+"/payments/"+id, nil); p.Identifier != id {
				b.Fatal(p)
			}
		}
	})
	b.Run("approve", func(b *testing.B) {
		ids := make([]string, b.N)
		for i := range ids {
			ids[i] = s.CreatePayment(benchPayment).Identifier
		}
		b.ReportAllocs()
		defer meterCPU(b)()
		b.ResetTimer()
		for i := range b.N {
			if p := call(http.MethodPost, s.URL+"/payments/"+ids[i]+"/approve", nil); !p.Status.DeveloperApproved {
				b.Fatal(p)
			}
		}
	})
	b.Run("complete", func(b *testing.B) {
		ids := make([]string, b.N)
		txids := make([]string, b.N)
		for i := range ids {
			ids[i] = s.CreatePayment(benchPayment).Identifier
			call(http.MethodPost, s.URL+"/payments/"+ids[i]+"/approve", nil)
			txid, err := s.SubmitTransaction(ids[i])
			if err != nil {
				b.Fatal(err)
			}
			txids[i] = txid
		}
		b.ReportAllocs()
		defer meterCPU(b)()
		b.ResetTimer()
		for i := range b.N {
			body, _ := json.Marshal(map[string]string{"txid": txids[i]})
			if p := call(http.MethodPost, s.URL+"/payments/"+ids[i]+"/complete", body); !p.Status.DeveloperCompleted {
				b.Fatal(p)
			}
		}
	})
}

// BenchmarkFlowParallel runs whole payment flows (get, approve, the user's
// wallet pays, complete) on 16 goroutines at once, as in the profile of
// issue 22. One op is one flow: three calls.
func BenchmarkFlowParallel(b *testing.B) {
	s, c := benchSetup(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.SetParallelism(max(1, 16/runtime.GOMAXPROCS(0)))
	defer meterCPU(b)()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			id := s.CreatePayment(benchPayment).Identifier
			if _, err := c.GetPayment(ctx, id); err != nil {
				b.Error(err)
				return
			}
			if _, err := c.Approve(ctx, id); err != nil {
				b.Error(err)
				return
			}
			txid, err := s.SubmitTransaction(id)
			if err != nil {
				b.Error(err)
				return
			}
			if p, err := c.Complete(ctx, id, txid); err != nil || !p.Status.DeveloperCompleted {
				b.Error(p, err)
				return
			}
		}
	})
}

// cannedTransport answers every request in memory with the answer pitest gave
// to the same call, so that a benchmark through it measures the client's own
// work (building the request, reading and decoding the answer) without the
// network, net/http's transport or the fake's.
type cannedTransport struct {
	get, approve, complete []byte
	header                 http.Header
}

func (t *cannedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		_, _ = io.Copy(io.Discard, r.Body)
		_ = r.Body.Close()
	}
	body := t.get
	switch {
	case bytes.HasSuffix([]byte(r.URL.Path), []byte("/approve")):
		body = t.approve
	case bytes.HasSuffix([]byte(r.URL.Path), []byte("/complete")):
		body = t.complete
	}
	return &http.Response{
		Status: "200 OK", StatusCode: http.StatusOK, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: t.header, Body: io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body)), Request: r,
	}, nil
}

// recordingTransport keeps the last answer body to each kind of call.
type recordingTransport struct{ canned cannedTransport }

func (t *recordingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		return nil, err
	}
	switch path := r.URL.Path; {
	case bytes.HasSuffix([]byte(path), []byte("/approve")):
		t.canned.approve = body
	case bytes.HasSuffix([]byte(path), []byte("/complete")):
		t.canned.complete = body
	default:
		t.canned.get = body
	}
	t.canned.header = resp.Header
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return resp, nil
}

// cannedAnswers runs one payment flow against pitest and returns a transport
// that gives its answers again, with the payment's id and txid.
func cannedAnswers(b *testing.B) (rt *cannedTransport, id, txid string) {
	b.Helper()
	s := pitest.NewServer()
	defer s.Close()
	rec := &recordingTransport{}
	c, err := piclient.New(piclient.Options{BaseURL: s.URL, APIKey: s.APIKey, HTTPClient: &http.Client{Transport: rec}})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	id = s.CreatePayment(benchPayment).Identifier
	if _, err := c.Approve(ctx, id); err != nil {
		b.Fatal(err)
	}
	if txid, err = s.SubmitTransaction(id); err != nil {
		b.Fatal(err)
	}
	if _, err := c.Complete(ctx, id, txid); err != nil {
		b.Fatal(err)
	}
	if _, err := c.GetPayment(ctx, id); err != nil {
		b.Fatal(err)
	}
	return &rec.canned, id, txid
}

// BenchmarkClientOnly is the client's own cost per call: each call answered
// in memory (cannedTransport). The plain sub-benchmarks are a bare
// http.Client and encoding/json making the same calls through the same
// transport.
func BenchmarkClientOnly(b *testing.B) {
	rt, id, txid := cannedAnswers(b)
	c, err := piclient.New(piclient.Options{BaseURL: "http://pi.invalid/v2", APIKey: pitest.DefaultAPIKey, HTTPClient: &http.Client{Transport: rt}})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.Run("get", func(b *testing.B) {
		b.ReportAllocs()
		defer meterCPU(b)()
		for b.Loop() {
			if _, err := c.GetPayment(ctx, id); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("approve", func(b *testing.B) {
		b.ReportAllocs()
		defer meterCPU(b)()
		for b.Loop() {
			if _, err := c.Approve(ctx, id); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("complete", func(b *testing.B) {
		b.ReportAllocs()
		defer meterCPU(b)()
		for b.Loop() {
			if _, err := c.Complete(ctx, id, txid); err != nil {
				b.Fatal(err)
			}
		}
	})
	hc := &http.Client{Transport: rt}
	plain := func(b *testing.B, method, url string, body func() []byte) {
		b.ReportAllocs()
		defer meterCPU(b)()
		for b.Loop() {
			var rd io.Reader
			if body != nil {
				rd = bytes.NewReader(body())
			}
			req, err := http.NewRequestWithContext(ctx, method, url, rd)
			if err != nil {
				b.Fatal(err)
			}
			req.Header.Set("Authorization", "Key "+pitest.DefaultAPIKey)
			req.Header.Set("Accept", "application/json")
			if body != nil {
				req.Header.Set("Content-Type", "application/json")
			}
			resp, err := hc.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			var p piclient.Payment
			if err := json.NewDecoder(resp.Body).Decode(&p); err != nil || p.Identifier != id {
				b.Fatal(err)
			}
			_ = resp.Body.Close()
		}
	}
	b.Run("plain-get", func(b *testing.B) { plain(b, http.MethodGet, "http://pi.invalid/v2/payments/"+id, nil) })
	b.Run("plain-approve", func(b *testing.B) { plain(b, http.MethodPost, "http://pi.invalid/v2/payments/"+id+"/approve", nil) })
	b.Run("plain-complete", func(b *testing.B) {
		plain(b, http.MethodPost, "http://pi.invalid/v2/payments/"+id+"/complete", func() []byte {
			body, _ := json.Marshal(map[string]string{"txid": txid})
			return body
		})
	})
}
