//go:build !linux

package ledger

// renameNoReplace renames from to to unless to exists (an error that is
// fs.ErrExist).
func renameNoReplace(from, to string) error { return renameUnlessThere(from, to) }
