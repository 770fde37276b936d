package verify

import (
	"math/big"
	"strings"

	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
)

// AmountText writes an amount as the "amount_text" claim: its exact decimal
// value in canonical form, without exponent, sign of zero, leading zeros
// beyond one, or trailing zeros after the point ("2.5", "3", "0.0000001").
// Two amounts are equal exactly when their texts are, so an app compares it
// with its price as a string, or parses it with a decimal type, and never
// goes through a binary float. It returns "" for an unset or invalid amount.
func AmountText(a piclient.Amount) string {
	r := a.Rat()
	if r == nil {
		return ""
	}
	// A decimal's denominator is 2^i·5^j; max(i, j) digits after the point
	// write it exactly.
	digits := 0
	for d := new(big.Int).Set(r.Denom()); d.Cmp(big.NewInt(1)) != 0 && digits < 400; digits++ {
		if new(big.Int).Mod(d, big.NewInt(10)).Sign() == 0 {
			d.Quo(d, big.NewInt(10))
		} else if new(big.Int).Mod(d, big.NewInt(2)).Sign() == 0 {
			d.Quo(d, big.NewInt(2))
		} else {
			d.Quo(d, big.NewInt(5))
		}
	}
	s := r.FloatString(digits)
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	if s == "-0" {
		s = "0"
	}
	return s
}
