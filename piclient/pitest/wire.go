package pitest

import (
	"encoding/json"
	"math"
	"strconv"
	"strings"

	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
)

// DefaultUserUID is the user_uid of payments created without one. Pi's uids
// are UUIDs.
const DefaultUserUID = "6f1c9a2e-3b4d-4e5f-8a7b-9c0d1e2f3a4b"

// wirePayment is a PaymentDTO as the API writes it: the amount as a JSON
// float (1.0, 0.42, 1e-05) and a field the client does not know
// (split_recipients: null), as Pi's answers have.
type wirePayment struct {
	piclient.Payment
	SplitRecipients json.RawMessage `json:"split_recipients"`
}

// wire returns p as the API writes it.
func wire(p piclient.Payment) wirePayment {
	p.Amount = floatAmount(p.Amount)
	return wirePayment{Payment: p}
}

// floatAmount writes a the way a float is printed by Pi's backend (as
// Python's repr does): at least one decimal ("1.0"), and an exponent below
// 1e-4 or from 1e16 ("1e-05"). An amount whose float form would not be
// exactly the same number is kept as it is: the fake never rounds.
func floatAmount(a piclient.Amount) piclient.Amount {
	f, err := strconv.ParseFloat(string(a), 64)
	if err != nil || math.IsInf(f, 0) {
		return a
	}
	s := strconv.FormatFloat(f, 'e', -1, 64)
	exp, err := strconv.Atoi(s[strings.IndexByte(s, 'e')+1:])
	if err != nil {
		return a
	}
	if exp >= -4 && exp < 16 {
		s = strconv.FormatFloat(f, 'f', -1, 64)
		if !strings.Contains(s, ".") {
			s += ".0"
		}
	}
	if out := piclient.Amount(s); out.Cmp(a) == 0 {
		return out
	}
	return a
}
