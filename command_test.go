package piguard

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/spf13/cobra"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caddy-pi-guard/caddy-pi-guard/internal/ledger"
	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
)

// adminServer serves the admin routes as Caddy's admin endpoint does and
// returns its address for --address.
func adminServer(t *testing.T) string {
	t.Helper()
	mux := http.NewServeMux()
	for _, rt := range append((adminAPI{}).Routes(), (watchAdminAPI{}).Routes()...) {
		mux.Handle(rt.Pattern, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if err := rt.Handler.ServeHTTP(w, r); err != nil {
				ae, _ := err.(caddy.APIError)
				writeJSON(w, ae.HTTPStatus, map[string]string{"error": ae.Message})
			}
		}))
	}
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	return u.Host
}

func TestCommandListsRetriesAndResolves(t *testing.T) {
	f := newAdminFixture(t, true)
	f.owe(t, "pay_cmd_retry", ledger.Exhausted, 10)
	f.owe(t, "pay_cmd_resolve", ledger.Exhausted, 10)
	addr := adminServer(t)

	var out bytes.Buffer
	require.NoError(t, cmdDeliveries(&out, addr, ledger.Exhausted, false))
	assert.Contains(t, out.String(), "PAYMENT ID")
	assert.Contains(t, out.String(), "pay_cmd_retry")
	assert.Contains(t, out.String(), "exhausted")

	out.Reset()
	err := cmdRetry(&out, addr, "pay_cmd_retry")
	require.Error(t, err, "the app still answers 500")
	assert.Contains(t, err.Error(), "did not accept it (the app answered HTTP 500)")

	f.appStatus.Store(http.StatusOK)
	require.NoError(t, cmdRetry(&out, addr, "pay_cmd_retry"))
	assert.Contains(t, out.String(), "payment pay_cmd_retry delivered")

	err = cmdRetry(&out, addr, "pay_cmd_retry")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "nothing is owed", "the admin API's message, not its JSON")
	assert.NotContains(t, err.Error(), `{"error"`)

	assert.ErrorContains(t, cmdResolve(&out, addr, "pay_cmd_resolve", " "), "needs --note")
	out.Reset()
	require.NoError(t, cmdResolve(&out, addr, "pay_cmd_resolve", "paid by hand, ticket 7"))
	assert.Contains(t, out.String(), "payment pay_cmd_resolve resolved (was exhausted after 10 attempt(s)): paid by hand, ticket 7")

	out.Reset()
	require.NoError(t, cmdDeliveries(&out, addr, "", false))
	assert.Equal(t, "no owed deliveries\n", out.String())

	assert.ErrorContains(t, cmdRetry(&out, addr, "../etc"), "not a payment id")
}

func TestCommandSaysWhenCaddyIsNotThere(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	u, _ := url.Parse(srv.URL)
	srv.Close()
	err := cmdDeliveries(new(bytes.Buffer), u.Host, "", false)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "admin API at "+u.Host)
}

// caddy pi-guard finds the admin address in --config, as caddy reload does.
func TestCommandReadsTheAdminAddressFromConfig(t *testing.T) {
	f := newAdminFixture(t, true)
	f.owe(t, "pay_cmd_config", ledger.Exhausted, 10)
	addr := adminServer(t)
	file := filepath.Join(t.TempDir(), "Caddyfile")
	require.NoError(t, os.WriteFile(file, []byte("{\n\tadmin "+addr+"\n}\n\nhttp://localhost:1 {\n\trespond ok\n}\n"), 0o600))

	run := func(args ...string) (string, error) {
		cmd := &cobra.Command{Use: "pi-guard"}
		piGuardCommand(cmd)
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(io.Discard)
		cmd.SetArgs(args)
		err := cmd.Execute()
		return out.String(), err
	}
	out, err := run("deliveries", "--config", file, "--adapter", "caddyfile")
	require.NoError(t, err)
	assert.Contains(t, out, "pay_cmd_config", "the listing came from the admin address in the config")

	_, err = run("deliveries", "--config", filepath.Join(t.TempDir(), "missing"), "--adapter", "caddyfile")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "finding the admin address in")

	// Without flags and without ./Caddyfile, Caddy's default (asked
	// without a request).
	t.Chdir(t.TempDir())
	cmd := &cobra.Command{Use: "pi-guard"}
	piGuardCommand(cmd)
	list, _, err := cmd.Find([]string{"deliveries"})
	require.NoError(t, err)
	require.NoError(t, list.ParseFlags(nil))
	got, err := adminAddress(list)
	require.NoError(t, err)
	assert.Equal(t, "localhost:2019", got)

	// Without flags, ./Caddyfile, as caddy reload reads it.
	t.Chdir(filepath.Dir(file))
	out, err = run("deliveries")
	require.NoError(t, err)
	assert.Contains(t, out, "pay_cmd_config", "the listing came from the admin address in ./Caddyfile")
}

// COMPLETED is when Pi completed the payment, not the record's last change;
// AMOUNT is the exact decimal ("4"), not Pi's float text ("4.0").
func TestCommandShowsCompletionTimeAndAmountText(t *testing.T) {
	f := newAdminFixture(t, true)
	completed := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	rec := &ledger.Record{PaymentID: "pay_cmd_when", Phase: phaseComplete, TxID: adminTxID, CompletedAt: completed,
		Payment: &piclient.Payment{Identifier: "pay_cmd_when", Amount: "4.0", Network: piclient.NetworkTestnet,
			Status:      piclient.Status{DeveloperApproved: true, TransactionVerified: true, DeveloperCompleted: true},
			Transaction: &piclient.Transaction{TxID: adminTxID, Verified: true}},
		Delivery: ledger.Delivery{State: ledger.Exhausted, Attempts: 10, LastError: "HTTP 500"}}
	require.NoError(t, f.h.store.Save(context.Background(), rec)) // updated: now
	addr := adminServer(t)

	var out bytes.Buffer
	require.NoError(t, cmdDeliveries(&out, addr, "", false))
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	require.Len(t, lines, 2, out.String())
	fields := strings.Fields(lines[1])
	assert.Equal(t, []string{"pay_cmd_when", "exhausted", "10", "4", "2026-01-02T03:04:05Z"}, fields[:5])
}
