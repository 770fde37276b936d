package seglog

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/assert"
)

func strs(lines [][]byte) []string {
	out := []string{}
	for _, l := range lines {
		out = append(out, string(l))
	}
	return out
}

func TestScan(t *testing.T) {
	for _, c := range []struct {
		name  string
		data  string
		lines []string
		n     int
	}{
		{"empty", "", []string{}, 0},
		{"whole lines", "a\nbc\n", []string{"a", "bc"}, 5},
		{"a line still being written", "a\nbc", []string{"a"}, 2},
		{"a preallocated tail", "a\nbc\n\x00\x00\x00", []string{"a", "bc"}, 5},
		{"a line cut short before the tail", "a\nbc\x00\x00", []string{"a"}, 2},
		{"nothing whole before the tail", "\x00\x00a\n", []string{}, 0},
		{"a gap, then a line never acknowledged", "a\n\x00\x00b\n", []string{"a"}, 2},
		{"a garbled line is still a line", "{\"x\":\n{}\n", []string{"{\"x\":", "{}"}, 9},
		{"an empty line", "\n\n", []string{"", ""}, 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			lines, n := Scan([]byte(c.data))
			assert.Equal(t, c.lines, strs(lines))
			assert.Equal(t, c.n, n)
		})
	}
}

// FuzzScan: a segment is bytes another process wrote, or a crash left.
// Whatever they are, Scan returns exactly the '\n'-terminated lines before
// the first zero byte, and says how much of data they took.
func FuzzScan(f *testing.F) {
	for _, s := range []string{"", "a\nb", "a\n\x00b\n", "{\"key\":\"k\",\"record\":{}}\n\x00\x00", "\n\x00\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		lines, n := Scan(data)
		if n < 0 || n > len(data) {
			t.Fatalf("took %d of %d bytes", n, len(data))
		}
		var joined []byte
		for _, l := range lines {
			joined = append(append(joined, l...), '\n')
		}
		if !bytes.Equal(joined, data[:n]) {
			t.Fatalf("the lines %q are not the %d bytes taken %q", joined, n, data[:n])
		}
		if bytes.IndexByte(data[:n], 0) >= 0 {
			t.Fatalf("took a zero byte: %q", data[:n])
		}
		rest := data[n:]
		if z := bytes.IndexByte(rest, 0); z >= 0 {
			rest = rest[:z]
		}
		if bytes.IndexByte(rest, '\n') >= 0 {
			t.Fatalf("left a whole line before the first zero byte: %q", data[n:])
		}
	})
}
