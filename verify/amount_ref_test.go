package verify

import (
	"math/big"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
)

// oldAmountText is AmountText as it was before decimalText, by exact
// rational arithmetic: the reference that AmountText must keep matching
// character for character.
func oldAmountText(a piclient.Amount) string {
	r := a.Rat()
	if r == nil {
		return ""
	}
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

// amountCorpus is amounts that probe decimalText's edges: canonical and not,
// zeros of every shape, exponents to the bounds and past them, rounding at
// the 400th digit with and without carry, and strings that are not JSON
// numbers but that big.Rat reads.
func amountCorpus() []string {
	c := []string{
		"", "0", "-0", "0.0", "-0.0", "0e0", "-0e-5", "0.000e+10", "00", "01", "-01", "1", "-1", "10", "100", "1.0", "1.10",
		"3.1415926", "-3.1415926", "0.5", "-0.5", ".5", "5.", "+1", "1e", "1e+", "1e-", "-", "--1", "1.e1", "1..1", "1e1.5",
		"1/4", "3/8", "1/3", "0x10", "0b101", "0o17", "1_000", " 1", "1 ", "abc", "NaN", "Inf", "1e1000", "1e-1000", "1e1001", "1e-1001",
		"9e999", "1E3", "1e+3", "1E-3", "12.34e1", "12.34e2", "12.34e3", "12.34e-1", "12.34e-2", "12.34e-3", "1e0001000", "1e00000000000000000005",
		"0.1e-399", "0.5e-400", "0.4e-400", "5e-401", "4e-401", "-5e-401", "-4e-401", "6e-401", "1.5e-400", "-1.5e-400", "2.5e-400",
		"1e-400", "1e-401", "9.99e-399", "9.99e-400", "9.95e-400", "9.94e-400", "0.9999e-396", "123456789.1234567",
		"0." + strings.Repeat("0", 399) + "1", "0." + strings.Repeat("0", 399) + "15", "0." + strings.Repeat("0", 399) + "14",
		"0." + strings.Repeat("9", 401), "-0." + strings.Repeat("9", 401), "9." + strings.Repeat("9", 400) + "5", "0." + strings.Repeat("0", 400) + "5",
		"0." + strings.Repeat("0", 400) + "49", "1." + strings.Repeat("0", 398) + "1", "1." + strings.Repeat("0", 399) + "5",
		"0." + strings.Repeat("0", 401) + "9", "1" + strings.Repeat("0", 99), "1" + strings.Repeat("0", 100),
		"-9" + strings.Repeat("9", 50) + "." + strings.Repeat("9", 40) + "e-420",
	}
	rng := rand.New(rand.NewPCG(1, 2))
	digits := func(n int, zeroBias bool) string {
		var b strings.Builder
		for range n {
			if zeroBias && rng.IntN(2) == 0 {
				b.WriteByte('0')
			} else {
				b.WriteByte(byte('0' + rng.IntN(10)))
			}
		}
		return b.String()
	}
	for range 30000 {
		var b strings.Builder
		if rng.IntN(3) == 0 {
			b.WriteByte('-')
		}
		if rng.IntN(3) == 0 {
			b.WriteByte('0')
		} else {
			b.WriteByte(byte('1' + rng.IntN(9)))
			b.WriteString(digits(rng.IntN(30), rng.IntN(2) == 0))
		}
		if rng.IntN(3) > 0 {
			b.WriteByte('.')
			b.WriteString(digits(1+rng.IntN(40), rng.IntN(2) == 0))
		}
		switch rng.IntN(4) {
		case 0:
		case 1:
			b.WriteString("e" + strconv.Itoa(rng.IntN(20)-10))
		case 2:
			b.WriteString([]string{"e", "E", "e+", "E-", "e-"}[rng.IntN(5)] + strconv.Itoa(rng.IntN(1003)))
		case 3:
			b.WriteString("e-" + strconv.Itoa(380+rng.IntN(60)))
		}
		c = append(c, b.String())
	}
	return c
}

func TestAmountTextMatchesRationalArithmetic(t *testing.T) {
	for _, s := range amountCorpus() {
		want := oldAmountText(piclient.Amount(s))
		if got := AmountText(piclient.Amount(s)); got != want {
			t.Fatalf("AmountText(%q) = %q, want %q", s, got, want)
		}
	}
}

// A canonical amount, the usual case, costs no allocation.
func TestAmountTextCanonicalDoesNotAllocate(t *testing.T) {
	for _, s := range []piclient.Amount{"3.1415926", "1", "0.5", "-2.25", "123456789.1234567"} {
		if n := testing.AllocsPerRun(100, func() { _ = AmountText(s) }); n != 0 {
			t.Errorf("AmountText(%q): %v allocations", s, n)
		}
	}
}

func FuzzAmountText(f *testing.F) {
	for _, s := range amountCorpus()[:200] {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if len(s) > 200 {
			return // big.Rat's cost grows fast with length; the grammar does not
		}
		want := oldAmountText(piclient.Amount(s))
		if got := AmountText(piclient.Amount(s)); got != want {
			t.Fatalf("AmountText(%q) = %q, want %q", s, got, want)
		}
	})
}

func BenchmarkAmountText(b *testing.B) {
	for _, s := range []piclient.Amount{"3.1415926", "3.14159260", "314.15926e-2"} {
		b.Run(string(s), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = AmountText(s)
			}
		})
	}
}
