package verify

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
)

func TestAmountText(t *testing.T) {
	for in, want := range map[piclient.Amount]string{
		"2.5": "2.5", "2.50": "2.5", "3": "3", "3.0": "3", "0.0000001": "0.0000001", "1e-7": "0.0000001",
		"3.1415926": "3.1415926", "314.15926e-2": "3.1415926", "1E3": "1000", "0": "0", "-0.0": "0", "007.10": "7.1",
		"123456789.1234567": "123456789.1234567", "": "", "abc": "",
	} {
		assert.Equal(t, want, AmountText(in), "AmountText(%q)", in)
	}
}

func TestAmountTextMustMatchThePayment(t *testing.T) {
	key := hsKey(t, "k", testSecret)
	c := validClaims(KindVerified)
	c.AmountText = "9999"
	v := newTestVerifier(t, Options{Keys: []Key{key}, Now: func() time.Time { return testNow }})
	_, err := v.VerifyToken(signRaw(t, key, TypeVerified, c), KindVerified)
	assert.ErrorIs(t, err, ErrMalformed)
	assert.ErrorContains(t, err, "amount_text")

	c.AmountText = AmountText(c.Payment.Amount)
	_, err = v.VerifyToken(signRaw(t, key, TypeVerified, c), KindVerified)
	assert.NoError(t, err)
}
