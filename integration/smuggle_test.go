package integration

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// smuggledBody is a body of exactly size bytes that starts like a payment
// callback, padded to skip bytes, and continues with complete HTTP/1.1
// requests of 64 bytes each, as an attacker would send them to be read as
// new requests by a server that stopped reading the body after skip bytes.
func smuggledBody(size, skip int) string {
	const req = "GET /orders HTTP/1.1\r\nHost: x\r\nX-Pad: "
	one := req + strings.Repeat("p", 64-len(req)-4) + "\r\n\r\n"
	var b strings.Builder
	b.WriteString(`{"paymentId":"`)
	b.WriteString(strings.Repeat("a", skip-b.Len()))
	for b.Len()+len(one) <= size {
		b.WriteString(one)
	}
	b.WriteString(strings.Repeat("a", size-b.Len()))
	return b.String()
}

// answersOnOneConnection writes head+body in one go on one keep-alive
// connection and counts the HTTP answers that come back before the server
// closes it (or goes quiet).
func answersOnOneConnection(t *testing.T, head, body string) (int, []int) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(caddyBase, "http://"))
	require.NoError(t, err)
	defer conn.Close()
	go func() { _, _ = io.WriteString(conn, head+body) }()
	br := bufio.NewReader(conn)
	var statuses []int
	for {
		_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			break
		}
		statuses = append(statuses, resp.StatusCode)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if len(statuses) > 50 {
			break
		}
	}
	return len(statuses), statuses
}

// Round three, attack 1: a refusal answered before the body was read whole
// must never leave the rest of the body to be parsed as new requests.
func TestEarlyRefusalNeverParsesTheBodyAsRequests(t *testing.T) {
	e := setup(t)
	const size = 2 << 20
	// The guard reads at most max_body (64 KiB) + 1 bytes of a body.
	body := smuggledBody(size, 64<<10+1)
	cases := map[string]string{
		"too large": "POST /payments/complete HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: " + strconv.Itoa(size) + "\r\n\r\n",
		"query":     "POST /payments/complete?x=1 HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: " + strconv.Itoa(size) + "\r\n\r\n",
		"method":    "PUT /payments/complete HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: " + strconv.Itoa(size) + "\r\n\r\n",
		"encoding":  "POST /payments/approve HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\nContent-Length: " + strconv.Itoa(size) + "\r\n\r\n",
	}
	for name, head := range cases {
		n, statuses := answersOnOneConnection(t, head, body)
		assert.Equal(t, 1, n, "%s: one request, one answer (got %v)", name, statuses)
	}
	// A body of plain bytes, and one small enough for net/http to drain.
	head := "POST /payments/complete HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: "
	n, statuses := answersOnOneConnection(t, head+strconv.Itoa(size)+"\r\n\r\n", strings.Repeat("a", size))
	assert.Equal(t, 1, n, "plain bytes: one answer (got %v)", statuses)
	small := smuggledBody(200<<10, 64<<10+1)
	n, statuses = answersOnOneConnection(t, head+strconv.Itoa(len(small))+"\r\n\r\n", small)
	assert.Equal(t, 1, n, "a 200 KiB body: one answer (got %v)", statuses)
	for _, r := range e.up.requests() {
		assert.NotEqual(t, "/orders", r.Path, "a smuggled request reached the app")
	}
}
