package piguard

// Micro-benchmarks of the guard's own work, run by `make bench` (never by
// `make test`, which runs no benchmarks): go test -run '^$' -bench . -benchmem .
// Token signing and verification are benchmarked in verify/bench_test.go.

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"

	"github.com/caddy-pi-guard/caddy-pi-guard/internal/ledger"
	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
	"github.com/caddy-pi-guard/caddy-pi-guard/piclient/pitest"
)

const benchSigningKey = "bench-signing-key-0123456789abcdef-0123456789"

// benchHandler provisions a guard against piURL with file storage in a
// temporary directory, as Caddy's default storage is.
func benchHandler(b *testing.B, piURL string) *Handler {
	b.Helper()
	h := &Handler{APIKey: pitest.DefaultAPIKey, APIURL: piURL, Network: piclient.NetworkTestnet, SigningKey: benchSigningKey,
		LookupRate: 1e6, LookupRatePerClient: 1e6} // one load generator plays every user
	h.logger = zap.NewNop()
	if err := h.provision(&certmagic.FileStorage{Path: b.TempDir()}); err != nil {
		b.Fatal(err)
	}
	if err := h.Validate(); err != nil {
		b.Fatal(err)
	}
	return h
}

// okNext is the upstream: it answers 200 with a short body.
type okNext struct{}

func (okNext) ServeHTTP(w http.ResponseWriter, r *http.Request) error {
	_, _ = io.Copy(io.Discard, r.Body)
	_, err := io.WriteString(w, "ok\n")
	return err
}

const (
	benchID   = "q6dCgzMcZk4RbMnyeuC4aYIZYCBi"
	benchTxID = "7a7ed20d3d72c365b9019baf8dc4c4e3cce4c08114d866e47ae157e3a796e9e7"
)

func BenchmarkParseCallbackJSON(b *testing.B) {
	body := []byte(`{"paymentId":"` + benchID + `","txid":"` + benchTxID + `"}`)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		cb, err := parseCallback("application/json", body)
		if err != nil || cb.PaymentID != benchID {
			b.Fatal(cb, err)
		}
	}
}

func BenchmarkParseCallbackForm(b *testing.B) {
	body := []byte("paymentId=" + benchID + "&txid=" + benchTxID)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		cb, err := parseCallback("application/x-www-form-urlencoded", body)
		if err != nil || cb.PaymentID != benchID {
			b.Fatal(cb, err)
		}
	}
}

// completedRecord is the record of a payment completed at the fake Pi, as the
// complete phase saves it: Pi's PaymentDTO, the stored request, owed delivery.
func completedRecord(b testing.TB) *ledger.Record {
	b.Helper()
	s := pitest.NewServer()
	b.Cleanup(s.Close)
	pi, err := piclient.New(piclient.Options{BaseURL: s.URL, APIKey: s.APIKey})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	p := s.CreatePayment(pitest.NewPayment{Amount: "3.14", Memo: "benchmark order 1234", Metadata: []byte(`{"orderId":1234}`)})
	if _, err := pi.Approve(ctx, p.Identifier); err != nil {
		b.Fatal(err)
	}
	txid, err := s.SubmitTransaction(p.Identifier)
	if err != nil {
		b.Fatal(err)
	}
	dto, err := pi.Complete(ctx, p.Identifier, txid)
	if err != nil {
		b.Fatal(err)
	}
	body := []byte(fmt.Sprintf(`{"paymentId":%q,"txid":%q}`, p.Identifier, txid))
	r := httptest.NewRequest(http.MethodPost, "http://app.example/payments/complete", nil)
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("User-Agent", "Mozilla/5.0 (Linux; Android 14) PiBrowser/1.0")
	r.Header.Set("X-Forwarded-For", "203.0.113.7")
	return &ledger.Record{
		PaymentID: p.Identifier, Phase: phaseComplete, TxID: txid, Payment: dto,
		Request:  newStoredRequest(r, body),
		Delivery: ledger.Delivery{State: ledger.Pending},
	}
}

// BenchmarkRecordSave is one durable write of an owed record to Caddy's
// default file storage, through the group-commit writer, one at a time. The
// record exists after the first write, so this is the replacing path: a
// temporary file, fsynced, renamed into place, the directory fsynced.
func BenchmarkRecordSave(b *testing.B) {
	st := ledger.New(&certmagic.FileStorage{Path: b.TempDir()}, "pi_guard/bench")
	rec := completedRecord(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := st.Save(ctx, rec); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRecordLoad reads and decodes one record.
func BenchmarkRecordLoad(b *testing.B) {
	st := ledger.New(&certmagic.FileStorage{Path: b.TempDir()}, "pi_guard/bench")
	rec := completedRecord(b)
	ctx := context.Background()
	if err := st.Save(ctx, rec); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		got, err := st.Load(ctx, rec.PaymentID)
		if err != nil || got == nil {
			b.Fatal(got, err)
		}
	}
}

// BenchmarkStorageLock takes and releases one payment's cross-instance lock
// in file storage (a lock file created, synced and removed).
func BenchmarkStorageLock(b *testing.B) {
	st := ledger.New(&certmagic.FileStorage{Path: b.TempDir()}, "pi_guard/bench")
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		unlock, err := st.Lock(ctx, benchID)
		if err != nil {
			b.Fatal(err)
		}
		unlock()
	}
}

// BenchmarkServeHTTPPassthrough is the guard on a route that is not a payment
// route: it strips its headers and calls the next handler.
func BenchmarkServeHTTPPassthrough(b *testing.B) {
	h := benchHandler(b, "http://127.0.0.1:1/v2")
	r := httptest.NewRequest(http.MethodGet, "http://app.example/hello?x=1", nil)
	for k, v := range map[string]string{
		"Accept": "text/html,application/xhtml+xml", "Accept-Language": "en-US,en;q=0.9", "Cookie": "session=abc123",
		"User-Agent": "Mozilla/5.0 (Linux; Android 14) PiBrowser/1.0", "X-Forwarded-For": "203.0.113.7",
	} {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	b.ReportAllocs()
	for b.Loop() {
		if err := h.ServeHTTP(w, r, okNext{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkServeHTTPPaymentFlow is one whole payment through the guard in
// process: approve (two Pi calls) and complete (one Pi call, a record write,
// the signed header, the upstream, the delivery record), against the fake Pi
// on loopback with no added latency. The fake's own work (creating the
// payment, the user's transaction, serving the three calls) is included.
func BenchmarkServeHTTPPaymentFlow(b *testing.B) {
	benchPaymentFlow(b, "session=bench-payer-0123456789") // the payer's browser
}

// BenchmarkServeHTTPPaymentFlowNoSession is BenchmarkServeHTTPPaymentFlow
// with a client that sends no cookie (as piguard-bench's load generator):
// the guard cannot tell its completion from a stranger's, so it reads Pi's
// view of the payment before locking, records the canonical completion and
// answers with its own JSON instead of the app's.
func BenchmarkServeHTTPPaymentFlowNoSession(b *testing.B) {
	benchPaymentFlow(b, "")
}

// benchPaymentFlow runs whole payments, approve then complete, from a client
// that sends cookie ("" for none).
func benchPaymentFlow(b *testing.B, cookie string) {
	s := pitest.NewServer(pitest.Options{Network: piclient.NetworkTestnet})
	b.Cleanup(s.Close)
	h := benchHandler(b, s.URL)
	b.Cleanup(func() { _ = h.Cleanup() })
	post := func(path, body string) {
		r := httptest.NewRequest(http.MethodPost, "http://app.example"+path, strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		if cookie != "" {
			r.Header.Set("Cookie", cookie)
		}
		w := httptest.NewRecorder()
		if err := h.ServeHTTP(w, r, okNext{}); err != nil || w.Code != http.StatusOK {
			b.Fatalf("%s: %d %s %v", path, w.Code, w.Body, err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		p := s.CreatePayment(pitest.NewPayment{Amount: "1", Memo: "benchmark"})
		post(DefaultApprovePath, `{"paymentId":"`+p.Identifier+`"}`)
		txid, err := s.SubmitTransaction(p.Identifier)
		if err != nil {
			b.Fatal(err)
		}
		post(DefaultCompletePath, `{"paymentId":"`+p.Identifier+`","txid":"`+txid+`"}`)
	}
}

// BenchmarkServeHTTPPaymentFlowParallel is BenchmarkServeHTTPPaymentFlow with
// 16 payments in flight per CPU (-cpu sets the CPUs), which is where records
// written to disk share syncs or queue for them.
func BenchmarkServeHTTPPaymentFlowParallel(b *testing.B) {
	s := pitest.NewServer(pitest.Options{Network: piclient.NetworkTestnet})
	b.Cleanup(s.Close)
	h := benchHandler(b, s.URL)
	b.Cleanup(func() { _ = h.Cleanup() })
	post := func(path, body string) error {
		r := httptest.NewRequest(http.MethodPost, "http://app.example"+path, strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("Cookie", "session=bench-payer-0123456789") // the payer's browser
		w := httptest.NewRecorder()
		if err := h.ServeHTTP(w, r, okNext{}); err != nil || w.Code != http.StatusOK {
			return fmt.Errorf("%s: %d %s %v", path, w.Code, w.Body, err)
		}
		return nil
	}
	b.ReportAllocs()
	b.SetParallelism(16)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			p := s.CreatePayment(pitest.NewPayment{Amount: "1", Memo: "benchmark"})
			if err := post(DefaultApprovePath, `{"paymentId":"`+p.Identifier+`"}`); err != nil {
				b.Error(err)
				return
			}
			txid, err := s.SubmitTransaction(p.Identifier)
			if err != nil {
				b.Error(err)
				return
			}
			if err := post(DefaultCompletePath, `{"paymentId":"`+p.Identifier+`","txid":"`+txid+`"}`); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
