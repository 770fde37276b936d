//go:build !unix

package ledger

import "os"

// openFile is os.OpenFile(name, flag, 0o600).
func openFile(name string, flag int) (*os.File, error) {
	return os.OpenFile(name, flag, 0o600)
}
