package pitest_test

import (
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
	"github.com/caddy-pi-guard/caddy-pi-guard/piclient/pitest"
)

func TestNewServerDefaults(t *testing.T) {
	t.Parallel()
	s := newFake(t)
	assert.True(t, strings.HasPrefix(s.URL, "http://127.0.0.1:"), s.URL)
	assert.True(t, strings.HasSuffix(s.URL, "/v2"), s.URL)
	base := strings.TrimSuffix(s.URL, "/v2")
	assert.Equal(t, base+"/horizon", s.HorizonURL)
	assert.Equal(t, base+"/control", s.ControlURL)
	assert.Equal(t, pitest.DefaultAPIKey, s.APIKey)
	assert.Equal(t, piclient.NetworkTestnet, s.Network)
	assert.Regexp(t, reAddress, s.Wallet)
	assert.NotEqual(t, s.Wallet, newFake(t).Wallet)
}

func TestNewServerAt(t *testing.T) {
	t.Parallel()
	// A fixed address: find a free port, then listen on it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())

	s, err := pitest.NewServerAt(addr, pitest.Options{APIKey: "fixed", Network: piclient.NetworkMainnet})
	require.NoError(t, err)
	defer s.Close()
	assert.Equal(t, "http://"+addr+"/v2", s.URL)
	p := s.CreatePayment(pitest.NewPayment{})
	assert.Equal(t, piclient.NetworkMainnet, p.Network)
	r := do(t, "GET", s.URL+"/payments/"+p.Identifier, "Key fixed", "")
	assert.Equal(t, http.StatusOK, r.status)

	_, err = pitest.NewServerAt(addr)
	assert.Error(t, err, "the address is taken")

	s.Close()
	_, err = http.Get(s.URL + "/me")
	assert.Error(t, err, "closed")
}
