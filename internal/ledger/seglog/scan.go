package seglog

import "bytes"

// Scan returns the whole lines at the start of data, without their '\n',
// and how many bytes of data they took (the next read starts there).
//
// It stops at the first zero byte, which is space the writer has not
// written (a preallocated tail) or a write a crash cut short, and before a
// last line with no '\n' yet (still being written). What a line holds is
// not checked: a line a crash garbled is returned like any other, for the
// caller to reject. Nothing after a stop is returned, even whole lines: an
// acknowledged record is synced with everything before it, so what follows a
// gap was never acknowledged.
func Scan(data []byte) (lines [][]byte, n int) {
	if z := bytes.IndexByte(data, 0); z >= 0 {
		data = data[:z]
	}
	for {
		nl := bytes.IndexByte(data[n:], '\n')
		if nl < 0 {
			return lines, n
		}
		lines = append(lines, data[n:n+nl])
		n += nl + 1
	}
}
