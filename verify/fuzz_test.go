package verify

import (
	"strings"
	"testing"
)

// FuzzVerifyToken feeds random strings and mutated valid tokens to
// VerifyToken: it must never panic, and a token must verify only if it is
// byte for byte one the signer made.
func FuzzVerifyToken(f *testing.F) {
	hs, ed := hsKey(f, "hs1", testSecret), edKey(f, "ed1", testEdSeed)
	v := newTestVerifier(f, Options{Keys: []Key{hs.Public(), ed.Public()}})

	valid := map[string]Kind{}
	for _, k := range []Key{hs, ed} {
		s := newDeterministicSigner(f, SignerOptions{Keys: []Key{k}})
		valid[signVerified(f, s)] = KindVerified
		notice, err := s.Sign(KindNotice, PhaseApprove, pendingPayment(), binding(), "uid")
		if err != nil {
			f.Fatal(err)
		}
		valid[notice] = KindNotice
	}
	for tok := range valid {
		f.Add(tok, uint(0), byte(0))
		f.Add(tok, uint(len(tok)-1), byte('A'))
		f.Add(tok, uint(strings.IndexByte(tok, '.')+3), byte('x'))
	}
	f.Add("", uint(0), byte(0))
	f.Add("a.b.c", uint(1), byte('.'))
	f.Add("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.", uint(0), byte(0))

	// The valid tokens verify as themselves.
	for tok, kind := range valid {
		if _, err := v.VerifyToken(tok, kind); err != nil {
			f.Fatalf("seed token does not verify: %v", err)
		}
	}

	f.Fuzz(func(t *testing.T, token string, pos uint, b byte) {
		check := func(tok string) {
			for _, kind := range []Kind{KindVerified, KindNotice} {
				c, err := v.VerifyToken(tok, kind)
				if err == nil {
					if want, ok := valid[tok]; !ok || want != kind {
						t.Fatalf("unexpected %s token verified: %q", kind, tok)
					}
					if c == nil {
						t.Fatal("nil claims without error")
					}
				} else if c != nil {
					t.Fatal("claims with an error")
				}
			}
		}
		check(token)

		// Mutate one byte of every valid token at pos.
		for tok := range valid {
			i := int(pos % uint(len(tok)))
			m := tok[:i] + string([]byte{b}) + tok[i+1:]
			check(m)
		}
	})
}
