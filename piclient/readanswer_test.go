package piclient

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// readAllLimited is what readAnswer replaces.
func readAllLimited(r io.Reader) ([]byte, error) {
	return io.ReadAll(io.LimitReader(r, MaxResponseBytes+1))
}

// chunkReader returns at most n bytes per Read, and err (instead of io.EOF)
// at the end of data when err is set.
type chunkReader struct {
	data []byte
	n    int
	err  error
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		return 0, io.EOF
	}
	k := min(len(p), r.n, len(r.data))
	copy(p, r.data[:k])
	r.data = r.data[k:]
	return k, nil
}

// checkReadAnswer compares readAnswer with readAllLimited on the reader
// newReader makes, for a buffer of each capacity and the sizes given. The
// readers end (or fail) at a place in their data, as a connection does, not
// after some number of Read calls: readAnswer reads in other sizes.
func checkReadAnswer(t *testing.T, name string, newReader func() io.Reader, sizes ...int64) {
	t.Helper()
	want, wantErr := readAllLimited(newReader())
	for _, capacity := range []int{0, 1, 16, 600, 4096, maxPooledAnswer} {
		for _, size := range sizes {
			buf := make([]byte, 7, capacity+7)[7:] // stale bytes before it
			for i := range buf[:cap(buf)] {
				buf[:cap(buf)][i] = 'x'
			}
			got, err := readAnswer(newReader(), size, &buf)
			require.Equal(t, wantErr, err, "%s cap %d size %d", name, capacity, size)
			// After an error the data is not used.
			require.True(t, err != nil || bytes.Equal(want, got), "%s cap %d size %d: %d bytes, want %d", name, capacity, size, len(got), len(want))
			require.True(t, len(buf) == len(got) && (len(got) == 0 || &buf[0] == &got[0]), "%s cap %d size %d: the grown buffer is handed back: %d %d", name, capacity, size, len(buf), len(got))
		}
	}
}

func TestReadAnswerIsReadAllLimited(t *testing.T) {
	boom := errors.New("boom")
	for _, n := range []int{0, 1, 511, 512, 513, 1000, 4095, 70000, MaxResponseBytes - 1, MaxResponseBytes, MaxResponseBytes + 1, MaxResponseBytes + 5000} {
		data := bytes.Repeat([]byte("0123456789abcdef"), n/16+1)[:n]
		sizes := []int64{-1, 0, int64(n), int64(n) + 1, int64(n) / 2, 1 << 40}
		checkReadAnswer(t, "whole", func() io.Reader { return bytes.NewReader(data) }, sizes...)
		if n <= 4096 { // a million one-byte reads is slow under the race detector
			checkReadAnswer(t, "one byte", func() io.Reader { return iotest.OneByteReader(bytes.NewReader(data)) }, -1, int64(n))
		}
		checkReadAnswer(t, "data with EOF", func() io.Reader { return iotest.DataErrReader(bytes.NewReader(data)) }, -1, int64(n))
		checkReadAnswer(t, "chunks", func() io.Reader { return &chunkReader{data: data, n: 700} }, -1, int64(n))
		checkReadAnswer(t, "error at the end", func() io.Reader { return &chunkReader{data: data, n: 300, err: boom} }, -1, int64(n))
		checkReadAnswer(t, "unexpected EOF", func() io.Reader { return &chunkReader{data: data, n: 4096, err: io.ErrUnexpectedEOF} }, int64(n)+10)
	}
}

func FuzzReadAnswer(f *testing.F) {
	f.Add([]byte(`{"identifier":"x"}`), uint16(3), int64(-1), uint16(0), false)
	f.Add([]byte(``), uint16(1), int64(0), uint16(600), true)
	f.Add(bytes.Repeat([]byte("a"), 2000), uint16(512), int64(1999), uint16(16), false)
	f.Fuzz(func(t *testing.T, data []byte, chunk uint16, size int64, capacity uint16, fail bool) {
		var err error
		if fail {
			err = io.ErrUnexpectedEOF
		}
		newReader := func() io.Reader { return &chunkReader{data: data, n: max(1, int(chunk)), err: err} }
		want, wantErr := readAllLimited(newReader())
		buf := make([]byte, 0, capacity)
		got, gotErr := readAnswer(newReader(), size, &buf)
		if !bytes.Equal(want, got) || wantErr != gotErr {
			t.Fatalf("readAnswer = %q, %v; io.ReadAll = %q, %v", got, gotErr, want, wantErr)
		}
	})
}

func TestAnswerBufsKeepOnlySmallBuffers(t *testing.T) {
	small := make([]byte, 100, maxPooledAnswer)
	putAnswerBuf(&small)
	assert.Empty(t, small, "reset before it is pooled")
	big := make([]byte, 10, maxPooledAnswer+1)
	putAnswerBuf(&big)
	assert.Len(t, big, 10, "left alone")
}
