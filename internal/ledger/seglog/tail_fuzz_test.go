package seglog

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzTail: a segment growing in pieces of any size, read by a Tail whose
// buffer is a few bytes (so that lines cross it), after every piece: the
// lines it returns, in order, are Scan's lines of what was there by the end,
// each once, at its offset.
func FuzzTail(f *testing.F) {
	f.Add([]byte("ab\ncd\n\x00\x00"), []byte{1, 2, 3}, uint8(1))
	f.Add([]byte("a long line\nb\n"), []byte{5}, uint8(3))
	f.Fuzz(func(t *testing.T, data, pieces []byte, size uint8) {
		if len(pieces) == 0 {
			pieces = []byte{byte(len(data))}
		}
		name := filepath.Join(t.TempDir(), "1.seg")
		w, err := os.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		r, err := os.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		tail := NewTail(r, 0)
		tail.size = int(size%16) + 1
		var got [][]byte
		var offs []int64
		read := func() {
			ls, at, err := tail.Read()
			if err != nil {
				t.Fatal(err)
			}
			got, offs = append(got, ls...), append(offs, at...)
		}
		for i, written := 0, 0; written < len(data); i++ {
			k := min(int(pieces[i%len(pieces)])+1, len(data)-written)
			if _, err := w.Write(data[written : written+k]); err != nil {
				t.Fatal(err)
			}
			written += k
			read()
		}
		read()
		want, _ := Scan(data)
		if len(got) != len(want) {
			t.Fatalf("read %d lines, Scan finds %d: %q against %q", len(got), len(want), got, want)
		}
		off := int64(0)
		for i := range want {
			if string(got[i]) != string(want[i]) || offs[i] != off {
				t.Fatalf("line %d: %q at %d, want %q at %d", i, got[i], offs[i], want[i], off)
			}
			off += int64(len(want[i]) + 1)
		}
		if tail.Offset() != off {
			t.Fatalf("offset %d after the lines, want %d", tail.Offset(), off)
		}
	})
}
