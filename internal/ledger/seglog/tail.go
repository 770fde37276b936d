package seglog

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
)

// MaxLine bounds one line: a longer one is not a record and stops a Tail
// with ErrLineTooLong. Records are a few hundred bytes, but one carries its
// request's body (base64), of at most max_body, which may be up to 1 GiB.
const MaxLine = 3 << 29

// ErrLineTooLong: a segment holds a line longer than any record, or bytes
// that are not a segment.
var ErrLineTooLong = errors.New("seglog: a line longer than any record")

// readSize is a Tail's read: most records are a few hundred bytes.
const readSize = 16 << 10

// Tail reads one segment from where it last stopped: each Read returns the
// whole lines written since. It is not safe for concurrent use.
type Tail struct {
	f    *os.File
	off  int64
	buf  []byte
	size int // readSize, smaller in tests
	max  int // MaxLine, smaller in tests
}

// NewTail follows f from offset off (0 for a segment not read before).
func NewTail(f *os.File, off int64) *Tail {
	return &Tail{f: f, off: off, size: readSize, max: MaxLine}
}

// Offset is where the next Read starts: every byte before it was returned
// in a whole line.
func (t *Tail) Offset() int64 { return t.off }

// Read returns the whole lines written after Offset, each with the offset
// it starts at, and moves Offset past them. It returns no lines when
// nothing new is whole yet (see Scan). An error comes with no lines: lines
// read before it are returned first, and the error by the next Read.
func (t *Tail) Read() (lines [][]byte, offsets []int64, err error) {
	if len(t.buf) != t.size {
		t.buf = make([]byte, t.size) // first Read, or after a long line
	}
	for {
		k, rerr := t.f.ReadAt(t.buf, t.off)
		if rerr != nil && !errors.Is(rerr, io.EOF) {
			if len(lines) > 0 {
				return lines, offsets, nil
			}
			return nil, nil, fmt.Errorf("seglog: reading %s at %d: %w", t.f.Name(), t.off, rerr)
		}
		got, n := Scan(t.buf[:k])
		for _, l := range got {
			lines = append(lines, bytes.Clone(l)) // buf is read into again
			offsets = append(offsets, t.off)
			t.off += int64(len(l) + 1)
		}
		switch {
		case k < len(t.buf):
			return lines, offsets, nil // all there was
		case bytes.IndexByte(t.buf[n:k], 0) >= 0:
			return lines, offsets, nil // stopped at unwritten space
		case n > 0:
			continue // the buffer ended inside a line: read on from it
		case len(t.buf) >= t.max:
			if len(lines) > 0 {
				return lines, offsets, nil // what came before, first
			}
			return nil, nil, fmt.Errorf("%w: %s at %d", ErrLineTooLong, t.f.Name(), t.off)
		case len(t.buf) > t.max/2:
			t.buf = make([]byte, t.max) // (no 2×: an int may be 32 bits)
		default:
			t.buf = make([]byte, 2*len(t.buf)) // one line longer than the buffer
		}
	}
}
