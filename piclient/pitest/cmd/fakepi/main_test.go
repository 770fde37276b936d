package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
	"github.com/caddy-pi-guard/caddy-pi-guard/piclient/pitest"
)

var reLine = regexp.MustCompile(`^fakepi: api (http://\S+/v2) control (http://\S+/control) horizon (http://\S+/horizon) \(network "Pi Network", wallet (G[A-Z2-7]{55})\)$`)

func TestRun(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-addr", "127.0.0.1:0", "-api-key", "k1", "-network", "Pi Network"}, pw, io.Discard)
		pw.Close()
	}()
	out := bufio.NewReader(pr)
	line, err := out.ReadString('\n')
	require.NoError(t, err)
	m := reLine.FindStringSubmatch(strings.TrimSpace(line))
	require.NotNil(t, m, "line %q", line)
	api, control := m[1], m[2]
	hint, err := out.ReadString('\n')
	require.NoError(t, err)
	assert.Equal(t, `fakepi: pi_guard settings that match: api_url `+api+`, network "Pi Network"`+"\n", hint)
	assert.NotContains(t, line+hint, "k1", "the API key is never printed")
	sdk, err := out.ReadString('\n')
	require.NoError(t, err)
	sdkURL := strings.TrimSuffix(api, "/v2") + "/pi-sdk.js"
	assert.Equal(t, `fakepi: fake Pi SDK for a frontend: <script src="`+sdkURL+`"></script>`+"\n", sdk)
	resp, err := http.Get(sdkURL)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode, "the SDK is where the line says")

	resp, err = http.Post(control+"/payments", "application/json", strings.NewReader(`{"amount":"1"}`))
	require.NoError(t, err)
	var p struct{ Identifier string }
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&p))
	resp.Body.Close()
	assert.Equal(t, http.StatusCreated, resp.StatusCode)

	req, _ := http.NewRequest("GET", api+"/payments/"+p.Identifier, nil)
	req.Header.Set("Authorization", "Key k1")
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)

	cancel()
	select {
	case err := <-done:
		assert.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("run did not stop")
	}
	_, err = http.Get(control + "/calls")
	assert.Error(t, err, "stopped listening")
}

func TestRunBadArguments(t *testing.T) {
	for _, args := range [][]string{{"-nope"}, {"extra"}, {"-addr", "127.0.0.1:99999"}} {
		err := run(t.Context(), args, io.Discard, io.Discard)
		assert.Error(t, err, "%v", args)
	}
	assert.ErrorIs(t, run(t.Context(), []string{"-h"}, io.Discard, io.Discard), flag.ErrHelp)
}

// A newcomer following the README got wrong_network: fakepi, `make run` and
// the README must name one network.
func TestNetworkAgreesWithMakeRun(t *testing.T) {
	assert.Equal(t, piclient.NetworkTestnet, defaultNetwork)
	// -h stops run before it listens; the flag's default is what it shows.
	var help strings.Builder
	assert.ErrorIs(t, run(t.Context(), []string{"-h"}, io.Discard, &help), flag.ErrHelp)
	assert.Contains(t, help.String(), `(default "`+defaultNetwork+`")`)
	for file, want := range map[string]string{
		"../../../../scripts/run.sh":         `PI_NETWORK="${PI_NETWORK:-` + defaultNetwork + `}"`,
		"../../../../examples/run.Caddyfile": `network "{$PI_NETWORK:` + defaultNetwork + `}"`,
		"../../../../README.md":              `network "` + defaultNetwork + `"`,
		"../../../../piclient/pitest/doc.go": `"` + defaultNetwork + `" unless told otherwise`,
	} {
		assert.True(t, strings.Contains(mustRead(t, file), want), "%s must say %s", file, want)
	}
	assert.Contains(t, mustRead(t, "../../../../scripts/run.sh"), `-network "$PI_NETWORK"`)
	// The fake platform's default, pitest's, is the same.
	s := pitest.NewServer()
	defer s.Close()
	assert.Equal(t, defaultNetwork, s.Network)
}

func mustRead(t *testing.T, file string) string {
	t.Helper()
	data, err := os.ReadFile(file)
	require.NoError(t, err)
	return string(data)
}
