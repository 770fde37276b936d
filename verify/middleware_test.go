package verify

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMiddleware(t *testing.T) {
	s, v := hsSetup(t)
	var gotBody string
	var gotClaims *Claims
	calls := 0
	h := Middleware(v, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls++
		b, err := io.ReadAll(r.Body)
		require.NoError(t, err)
		gotBody = string(b)
		gotClaims, _ = FromContext(r.Context())
		w.WriteHeader(http.StatusNoContent)
	}))

	w := httptest.NewRecorder()
	h.ServeHTTP(w, verifiedRequest(signVerified(t, s)))
	assert.Equal(t, http.StatusNoContent, w.Code)
	assert.Equal(t, testBody, gotBody, "the next handler reads the identical body")
	require.NotNil(t, gotClaims)
	assert.Equal(t, testPaymentID, gotClaims.Subject)

	notice, err := s.Sign(KindNotice, PhaseApprove, pendingPayment(), binding(), "")
	require.NoError(t, err)
	for name, r := range map[string]*http.Request{
		"missing": verifiedRequest(""),
		"forged":  verifiedRequest(strings.Replace(signVerified(t, s), ".", ".e", 1)),
		"notice":  verifiedRequest(notice),
		"replay":  request(http.MethodPost, "/payments/cancel", testBody, HeaderVerified, signVerified(t, s)),
	} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		assert.Equal(t, http.StatusUnauthorized, w.Code, name)
		assert.Equal(t, "application/json", w.Header().Get("Content-Type"))
		var body map[string]string
		require.NoError(t, json.Unmarshal(w.Body.Bytes(), &body), name)
		assert.Equal(t, "payment_not_verified", body["error"], name)
		assert.NotEmpty(t, body["message"], name)
	}
	assert.Equal(t, 1, calls, "next runs only for the verified request")
}

func TestFromContextEmpty(t *testing.T) {
	c, ok := FromContext(httptest.NewRequest("GET", "/", nil).Context())
	assert.False(t, ok)
	assert.Nil(t, c)
}
