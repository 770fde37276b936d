package seglog

import (
	"crypto/rand"
	"encoding/hex"
)

// token is 8 random hex digits: two processes starting a segment in the
// same nanosecond still name it apart.
func token() string {
	b := make([]byte, 4)
	rand.Read(b)
	return hex.EncodeToString(b)
}
