package piclient

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/big"
	"strings"
	"unicode/utf8"
)

// Directions of a payment, as in PaymentDTO.direction.
const (
	DirectionUserToApp = "user_to_app"
	DirectionAppToUser = "app_to_user"
)

// Networks a payment can be made on, as in PaymentDTO.network.
const (
	NetworkMainnet = "Pi Network"
	NetworkTestnet = "Pi Testnet"
)

// Payment is the Pi Platform API's PaymentDTO.
type Payment struct {
	Identifier  string          `json:"identifier"`
	UserUID     string          `json:"user_uid"`
	Amount      Amount          `json:"amount"`
	Memo        string          `json:"memo"`
	Metadata    json.RawMessage `json:"metadata"`
	FromAddress string          `json:"from_address"`
	ToAddress   string          `json:"to_address"`
	Direction   string          `json:"direction"`
	CreatedAt   string          `json:"created_at"`
	Network     string          `json:"network"`
	Status      Status          `json:"status"`
	// Transaction is nil until the user's wallet has submitted the blockchain
	// transaction.
	Transaction *Transaction `json:"transaction"`
}

// Status holds the flags of PaymentDTO.status.
type Status struct {
	DeveloperApproved   bool `json:"developer_approved"`
	TransactionVerified bool `json:"transaction_verified"`
	DeveloperCompleted  bool `json:"developer_completed"`
	Cancelled           bool `json:"cancelled"`
	UserCancelled       bool `json:"user_cancelled"`
}

// Transaction is PaymentDTO.transaction.
type Transaction struct {
	TxID string `json:"txid"`
	// Verified is true when Pi checked that the blockchain transaction matches
	// the payment.
	Verified bool `json:"verified"`
	// Link is the URL of the transaction on the Pi blockchain API (Horizon).
	Link string `json:"_link"`
}

// TxID returns the payment's transaction id in lower case (NormalizeTxID), or
// "" when it has none.
func (p *Payment) TxID() string {
	if p == nil || p.Transaction == nil {
		return ""
	}
	return NormalizeTxID(p.Transaction.TxID)
}

// IsCancelled reports whether the developer or the user cancelled the payment.
func (p *Payment) IsCancelled() bool {
	return p.Status.Cancelled || p.Status.UserCancelled
}

// IsCompletedWith reports whether Pi marks the payment completed by the
// developer with the given transaction id (compared in lower case, as
// NormalizeTxID writes it).
func (p *Payment) IsCompletedWith(txid string) bool {
	return p != nil && p.Status.DeveloperCompleted && txid != "" && p.TxID() == NormalizeTxID(txid)
}

// User is the Pi Platform API's UserDTO, returned by GET /me.
type User struct {
	UID         string      `json:"uid"`
	Credentials Credentials `json:"credentials"`
	// Username is present only when the user granted the username scope.
	Username string `json:"username,omitempty"`
}

// Credentials is UserDTO.credentials.
type Credentials struct {
	Scopes     []string   `json:"scopes"`
	ValidUntil ValidUntil `json:"valid_until"`
}

// ValidUntil is UserDTO.credentials.valid_until.
type ValidUntil struct {
	Timestamp int64  `json:"timestamp"`
	ISO8601   string `json:"iso8601"`
}

// Amount is a decimal amount of Pi kept as its exact decimal text, so that no
// digit is lost to binary floating point. The zero value is an unset amount.
type Amount string

// Bounds on an amount's text. A Pi amount is a handful of digits; the bounds
// keep Rat (and so Cmp) cheap and certain to succeed for every parsed Amount:
// an exponent such as 1e1000000000 is valid JSON but would cost gigabytes to
// turn into an exact number (math/big refuses it), and a megabyte of digits
// costs seconds on every comparison.
const (
	maxAmountLength   = 100
	maxAmountExponent = 1000
)

// ParseAmount checks that s is a finite decimal number (as JSON writes numbers,
// with no surrounding whitespace, at most 100 characters and an exponent of
// at most 1000 in magnitude) and returns it as an Amount. Negative amounts are
// accepted: the grammar allows them; whether one makes sense is the caller's
// business.
func ParseAmount(s string) (Amount, error) {
	if !isJSONNumber(s) {
		return "", fmt.Errorf("piclient: amount %q is not a decimal number", truncate(s, 40))
	}
	return Amount(s), nil
}

// Rat returns the amount as an exact rational number, or nil when unset or
// invalid.
func (a Amount) Rat() *big.Rat {
	if a == "" {
		return nil
	}
	r, ok := new(big.Rat).SetString(string(a))
	if !ok {
		return nil
	}
	return r
}

// Cmp compares a and b exactly: -1 if a < b, 0 if equal, +1 if a > b. An unset
// or invalid amount compares lower than any number.
func (a Amount) Cmp(b Amount) int {
	ra, rb := a.Rat(), b.Rat()
	switch {
	case ra == nil && rb == nil:
		return 0
	case ra == nil:
		return -1
	case rb == nil:
		return 1
	}
	return ra.Cmp(rb)
}

// String returns the decimal text.
func (a Amount) String() string { return string(a) }

// MarshalJSON writes the amount as a JSON number, exactly as received.
func (a Amount) MarshalJSON() ([]byte, error) {
	if a == "" {
		return []byte("null"), nil
	}
	if !isJSONNumber(string(a)) {
		return nil, fmt.Errorf("piclient: amount %q is not a decimal number", truncate(string(a), 40))
	}
	return []byte(a), nil
}

// UnmarshalJSON accepts a JSON number (or a string holding one) and keeps its
// exact text.
func (a *Amount) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if string(b) == "null" {
		*a = ""
		return nil
	}
	s := string(b)
	if strings.HasPrefix(s, `"`) {
		if err := json.Unmarshal(b, &s); err != nil {
			return fmt.Errorf("piclient: amount: %w", err)
		}
	}
	v, err := ParseAmount(s)
	if err != nil {
		return err
	}
	*a = v
	return nil
}

// isJSONNumber reports whether s is exactly a number in JSON's grammar
// (RFC 8259 section 6), with nothing around it, within the bounds above.
//
//	number = [ "-" ] int [ "." 1*DIGIT ] [ ( "e" / "E" ) [ "+" / "-" ] 1*DIGIT ]
//	int    = "0" / ( %x31-39 *DIGIT )
func isJSONNumber(s string) bool {
	if s == "" || len(s) > maxAmountLength {
		return false
	}
	i := 0
	if s[i] == '-' {
		i++
	}
	digits := func() int {
		n := 0
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
			n++
		}
		return n
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && s[i] >= '1' && s[i] <= '9':
		digits()
	default:
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		if digits() == 0 {
			return false
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		start := i
		if digits() == 0 {
			return false
		}
		exp := 0
		for _, c := range []byte(s[start:i]) {
			exp = exp*10 + int(c-'0')
			if exp > maxAmountExponent {
				return false
			}
		}
	}
	return i == len(s)
}

// truncate shortens s to at most n bytes (plus an ellipsis), without cutting a
// UTF-8 sequence in two.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
