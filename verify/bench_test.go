package verify

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

func benchSign(b *testing.B, k Key) {
	s := newTestSigner(b, SignerOptions{Keys: []Key{k}})
	p, bind := completedPayment(), binding()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Sign(KindVerified, PhaseComplete, p, bind, ""); err != nil {
			b.Fatal(err)
		}
	}
}

// benchVerify measures Verify on a full request, body digest included.
func benchVerify(b *testing.B, k Key) {
	tok := signVerified(b, newTestSigner(b, SignerOptions{Keys: []Key{k}}))
	v := newTestVerifier(b, Options{Keys: []Key{k.Public()}})
	r := httptest.NewRequest(http.MethodPost, testPath, nil)
	r.Header.Set(HeaderVerified, tok)
	body := []byte(testBody)
	b.ReportAllocs()
	for b.Loop() {
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		if _, err := v.Verify(r); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSignHS256(b *testing.B)   { benchSign(b, hsKey(b, "hs1", testSecret)) }
func BenchmarkVerifyHS256(b *testing.B) { benchVerify(b, hsKey(b, "hs1", testSecret)) }
func BenchmarkSignEdDSA(b *testing.B)   { benchSign(b, edKey(b, "ed1", testEdSeed)) }
func BenchmarkVerifyEdDSA(b *testing.B) { benchVerify(b, edKey(b, "ed1", testEdSeed)) }
