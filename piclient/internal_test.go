package piclient

import (
	"errors"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestNewDefaults(t *testing.T) {
	c, err := New(Options{APIKey: "k"})
	require.NoError(t, err)
	assert.Equal(t, DefaultBaseURL, c.base)
	assert.Equal(t, DefaultTimeout, c.timeout)
	assert.Equal(t, DefaultMaxRetries, c.retries)
	assert.Equal(t, DefaultMinBackoff, c.minBack)
	assert.Equal(t, DefaultMaxBackoff, c.maxBack)
	assert.Equal(t, "caddy-pi-guard", c.userAgent)
	assert.Equal(t, "Key k", c.cred.header)
	require.NotNil(t, c.http)
	require.NotNil(t, c.http.CheckRedirect)
	assert.ErrorIs(t, c.http.CheckRedirect(nil, nil), http.ErrUseLastResponse)

	c, err = New(Options{APIKey: "k", MaxRetries: -5, Timeout: -1, MinBackoff: time.Second, MaxBackoff: time.Millisecond})
	require.NoError(t, err)
	assert.Equal(t, 0, c.retries)
	assert.Equal(t, DefaultTimeout, c.timeout)
	assert.Equal(t, time.Second, c.maxBack, "MaxBackoff is raised to MinBackoff")
}

func TestBackoffBounds(t *testing.T) {
	for _, tc := range []struct{ min, max time.Duration }{
		{time.Millisecond, 5 * time.Millisecond},
		{DefaultMinBackoff, DefaultMaxBackoff},
		{time.Second, time.Second},
		{1, 1},
		{time.Millisecond, math.MaxInt64},
		{math.MaxInt64 / 2, math.MaxInt64},
		{math.MaxInt64, math.MaxInt64},
	} {
		c := &Client{minBack: tc.min, maxBack: tc.max}
		for _, attempt := range []int{0, 1, 2, 5, 30, 62, 63, 64, 65, 100, 1000, math.MaxInt32} {
			for range 20 {
				d := c.backoff(attempt, errors.New("x"))
				assert.GreaterOrEqual(t, d, tc.min/2, "min %v max %v attempt %d", tc.min, tc.max, attempt)
				assert.LessOrEqual(t, d, tc.max, "min %v max %v attempt %d", tc.min, tc.max, attempt)
			}
		}
	}

	c := &Client{minBack: time.Millisecond, maxBack: 50 * time.Millisecond}
	// The first wait is at most 1.5 x MinBackoff.
	for range 100 {
		assert.LessOrEqual(t, c.backoff(0, nil), 1500*time.Microsecond)
	}
	// Retry-After wins when longer, capped at MaxBackoff.
	assert.Equal(t, 20*time.Millisecond, c.backoff(0, &Error{RetryAfter: 20 * time.Millisecond}))
	assert.Equal(t, 50*time.Millisecond, c.backoff(0, &Error{RetryAfter: time.Hour}))
	assert.Equal(t, 50*time.Millisecond, c.backoff(3, &Error{RetryAfter: math.MaxInt64}))
}

func TestRetryAfter(t *testing.T) {
	for v, want := range map[string]time.Duration{
		"":                              0,
		"0":                             0,
		"1":                             time.Second,
		" 120 ":                         2 * time.Minute,
		"-1":                            0,
		"1.5":                           0,
		"soon":                          0,
		"86400":                         24 * time.Hour,
		"86401":                         24 * time.Hour,
		"9223372036854775807":           24 * time.Hour,
		"9223372036854":                 24 * time.Hour,
		"99999999999999999999999":       0,
		"Mon, 02 Jan 2006 15:04:05 GMT": 0, // in the past
	} {
		assert.Equal(t, want, retryAfter(v), "%q", v)
	}
	future := retryAfter(time.Now().Add(time.Hour).UTC().Format(http.TimeFormat))
	assert.Greater(t, future, 58*time.Minute)
	assert.LessOrEqual(t, future, time.Hour)
}

func TestRedact(t *testing.T) {
	const key = "pik_LEAKCANARY_7f3e9a1c5b2d4e6f8a0b1c2d3e4f5a6b"
	for in, want := range map[string]string{
		"":                                     "",
		"nothing here":                         "nothing here",
		"key " + key + " end":                  "key [redacted] end",
		key + key:                              "[redacted][redacted]",
		"cut " + key[:40] + "…":                "cut [redacted]…",
		"tail " + key[20:]:                     "tail [redacted]",
		"middle " + key[5:17] + "!":            "middle [redacted]!",
		"short piece " + key[5:16] + " kept":   "short piece " + key[5:16] + " kept",
		"two " + key[:13] + " and " + key[30:]: "two [redacted] and [redacted]",
	} {
		assert.Equal(t, want, redact(in, key), "%q", in)
	}
	assert.Equal(t, "a [redacted] b", redact("a abc b", "abc"), "short secrets: whole occurrences only")
	assert.Equal(t, "a ab b", redact("a ab b", "abc"))
	assert.Equal(t, "x", redact("x", ""))

	// redactErr keeps the chain and only wraps when needed.
	base := errors.New("plain")
	assert.Same(t, base, redactErr(base, key))
	assert.NoError(t, redactErr(nil, key))
	leaky := errors.New("got " + key)
	r := redactErr(leaky, key)
	assert.Equal(t, "got [redacted]", r.Error())
	assert.ErrorIs(t, r, leaky)
}

func TestTruncate(t *testing.T) {
	assert.Equal(t, "abc", truncate("abc", 3))
	assert.Equal(t, "ab…", truncate("abc", 2))
	assert.Equal(t, "…", truncate("é", 1))
	for n := range 12 {
		s := truncate("aéb€c😀d", n)
		assert.True(t, utf8.ValidString(s), "%d: %q", n, s)
		assert.LessOrEqual(t, len(strings.TrimSuffix(s, "…")), n)
	}
}

func TestIsJSONNumberAgreesWithEncodingJSON(t *testing.T) {
	// Everything accepted is a JSON number that math/big can turn into an
	// exact value.
	for _, s := range []string{"0", "-0", "1.5", "1e5", "1E-5", "1e+5", "-0.0e0", "1e1000", "1e-1000"} {
		require.True(t, isJSONNumber(s), s)
		require.NotNil(t, Amount(s).Rat(), s)
	}
	for _, s := range []string{"1e1001", "-1e-1001", "1 ", " 1", "1e-", "1.e1", "-", "0.", "00.1"} {
		assert.False(t, isJSONNumber(s), s)
	}
}
