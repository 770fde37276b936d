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
//
// (A value with more than 400 digits after the point is rounded to 400, half
// away from zero; no Pi amount comes near.)
func AmountText(a piclient.Amount) string {
	if s, ok := decimalText(string(a)); ok {
		return s
	}
	return amountTextRat(a)
}

// maxAmountDigits is how many digits after the point AmountText writes at
// most.
const maxAmountDigits = 400

// decimalText is AmountText for a number in JSON's grammar, which is what
// every amount parsed from Pi is, without math/big: it moves the digits
// instead of dividing. An amount that is canonical already, as Pi writes
// most, comes back as it is, without allocating. ok is false for anything
// else (not a JSON number, or an exponent beyond ±1000), which amountTextRat
// handles.
func decimalText(s string) (text string, ok bool) {
	// number = [ "-" ] int [ "." 1*DIGIT ] [ ( "e" / "E" ) [ "+" / "-" ] 1*DIGIT ]
	// int    = "0" / ( %x31-39 *DIGIT )
	i := 0
	neg := i < len(s) && s[i] == '-'
	if neg {
		i++
	}
	intStart := i
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && s[i] >= '1' && s[i] <= '9':
		for i < len(s) && isDigit(s[i]) {
			i++
		}
	default:
		return "", false
	}
	intDigits := s[intStart:i]
	var frac string
	if i < len(s) && s[i] == '.' {
		i++
		start := i
		for i < len(s) && isDigit(s[i]) {
			i++
		}
		if i == start {
			return "", false
		}
		frac = s[start:i]
	}
	exp, hasExp := 0, false
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		hasExp = true
		i++
		expNeg := false
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			expNeg = s[i] == '-'
			i++
		}
		start := i
		for i < len(s) && isDigit(s[i]) {
			exp = exp*10 + int(s[i]-'0')
			if exp > 1000 {
				return "", false
			}
			i++
		}
		if i == start {
			return "", false
		}
		if expNeg {
			exp = -exp
		}
	}
	if i != len(s) {
		return "", false
	}

	// Canonical already: no exponent, no trailing zero after the point, no
	// negative zero, and digits enough. JSON's int has no leading zeros.
	if !hasExp && (frac == "" || frac[len(frac)-1] != '0') && s != "-0" && len(frac) <= maxAmountDigits {
		return s, true
	}

	// The value is 0.D × 10^point, D the digits of int and frac together
	// without leading and trailing zeros.
	d := intDigits
	if d == "0" {
		d = ""
	}
	point := len(d) + exp
	if d == "" {
		for len(frac) > 0 && frac[0] == '0' {
			frac = frac[1:]
			point--
		}
	}
	// Only int's digits may be trailing zeros followed by frac's.
	if strings.TrimRight(frac, "0") == "" {
		frac = ""
		d = strings.TrimRight(d, "0")
	} else {
		frac = strings.TrimRight(frac, "0")
	}
	n := len(d) + len(frac)
	if n == 0 {
		return "0", true
	}
	buf := make([]byte, 0, n+1) // the digits, rounded below if need be
	buf = append(buf, d...)
	buf = append(buf, frac...)
	if n-point > maxAmountDigits {
		// Round to maxAmountDigits after the point, half away from zero, as
		// big.Rat.FloatString does: keep digits [0, keep) and round up when
		// the first digit dropped is 5 or more.
		keep := point + maxAmountDigits
		switch {
		case keep < 0:
			return "0", true
		case keep == 0:
			if buf[0] < '5' {
				return "0", true
			}
			buf = append(buf[:0], '1')
			point++
		default:
			up := buf[keep] >= '5'
			buf = buf[:keep]
			if up {
				j := keep - 1
				for j >= 0 && buf[j] == '9' {
					buf[j] = '0'
					j--
				}
				if j >= 0 {
					buf[j]++
				} else {
					buf = append([]byte{'1'}, buf...)
					point++
				}
			}
			for len(buf) > 0 && buf[len(buf)-1] == '0' {
				buf = buf[:len(buf)-1]
			}
			if len(buf) == 0 {
				return "0", true
			}
		}
	}

	out := make([]byte, 0, len(buf)+max(point, -point, 0)+3)
	if neg {
		out = append(out, '-')
	}
	switch {
	case point <= 0:
		out = append(out, "0."...)
		for range -point {
			out = append(out, '0')
		}
		out = append(out, buf...)
	case point >= len(buf):
		out = append(out, buf...)
		for range point - len(buf) {
			out = append(out, '0')
		}
	default:
		out = append(out, buf[:point]...)
		out = append(out, '.')
		out = append(out, buf[point:]...)
	}
	return string(out), true
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// amountTextRat is AmountText by exact rational arithmetic, for what
// decimalText leaves: strings that are not JSON numbers but that big.Rat
// reads ("1/4", "0x10", ".5").
func amountTextRat(a piclient.Amount) string {
	r := a.Rat()
	if r == nil {
		return ""
	}
	// A decimal's denominator is 2^i·5^j; max(i, j) digits after the point
	// write it exactly.
	digits := 0
	for d := new(big.Int).Set(r.Denom()); d.Cmp(big.NewInt(1)) != 0 && digits < maxAmountDigits; digits++ {
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
