package piclient

import (
	"errors"
	"fmt"
	"strings"
)

// MaxPaymentIDLength is the longest payment identifier accepted. Pi's
// identifiers are about 28 characters; anything far longer is not one.
const MaxPaymentIDLength = 64

// TxIDLength is the length of a transaction id: a hex SHA-256 hash, as on the
// Stellar-based Pi blockchain.
const TxIDLength = 64

// ErrInvalidPaymentID and ErrInvalidTxID are returned (wrapped) for malformed
// identifiers, before any request is made.
var (
	ErrInvalidPaymentID = errors.New("invalid payment id")
	ErrInvalidTxID      = errors.New("invalid txid")
)

// ValidatePaymentID checks that id is safe to place in a URL path: 1 to
// MaxPaymentIDLength characters from [A-Za-z0-9_-]. Slashes, dots, percent
// signs, whitespace and every non-ASCII character are refused.
func ValidatePaymentID(id string) error {
	if id == "" {
		return fmt.Errorf("%w: empty", ErrInvalidPaymentID)
	}
	if len(id) > MaxPaymentIDLength {
		return fmt.Errorf("%w: longer than %d characters", ErrInvalidPaymentID, MaxPaymentIDLength)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return fmt.Errorf("%w: only letters, digits, '_' and '-' are allowed", ErrInvalidPaymentID)
		}
	}
	return nil
}

// ValidateTxID checks that txid is exactly TxIDLength hexadecimal digits, in
// either case. Pi and Horizon write txids in lower case: pass a valid txid
// through NormalizeTxID before comparing, storing or sending it.
func ValidateTxID(txid string) error {
	if len(txid) != TxIDLength {
		return fmt.Errorf("%w: must be %d hexadecimal digits", ErrInvalidTxID, TxIDLength)
	}
	for i := 0; i < len(txid); i++ {
		c := txid[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return fmt.Errorf("%w: must be %d hexadecimal digits", ErrInvalidTxID, TxIDLength)
		}
	}
	return nil
}

// NormalizeTxID returns txid in lower case, the form Pi and Horizon use. Two
// valid txids name the same transaction exactly when their normalized forms
// are equal.
func NormalizeTxID(txid string) string { return strings.ToLower(txid) }
