package verify

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
)

// bufferBody reads r.Body, at most limit bytes, and puts it back so that the
// next reader sees the same bytes: on success r.Body replays them and
// r.ContentLength is their length. When the body is too long or reading fails
// r.Body still yields everything, the bytes read first followed by the rest.
func bufferBody(r *http.Request, limit int64) ([]byte, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	if r.ContentLength > limit {
		return nil, fmt.Errorf("%w: %w: Content-Length %d, limit %d", ErrBinding, ErrBodyTooLarge, r.ContentLength, limit)
	}
	orig := r.Body
	var buf bytes.Buffer
	if r.ContentLength > 0 {
		buf.Grow(int(r.ContentLength) + 1)
	}
	_, err := buf.ReadFrom(io.LimitReader(orig, limit+1))
	data := buf.Bytes()
	if err != nil || int64(len(data)) > limit {
		r.Body = replayBody{Reader: io.MultiReader(bytes.NewReader(data), orig), closer: orig}
		if err != nil {
			return nil, fmt.Errorf("%w: reading body: %v", ErrBinding, err)
		}
		return nil, fmt.Errorf("%w: %w: body longer than %d bytes", ErrBinding, ErrBodyTooLarge, limit)
	}
	r.Body = replayBody{Reader: bytes.NewReader(data), closer: orig}
	r.ContentLength = int64(len(data))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }
	return data, nil
}

// replayBody reads buffered bytes and closes the original body.
type replayBody struct {
	io.Reader
	closer io.Closer
}

func (b replayBody) Close() error { return b.closer.Close() }
