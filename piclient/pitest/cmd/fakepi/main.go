// Command fakepi runs the fake Pi Platform API of package pitest as a
// standalone process, for manual testing and demos:
//
//	go run ./piclient/pitest/cmd/fakepi -addr 127.0.0.1:8090 -api-key pitest-api-key
//
// Its payments are on "Pi Testnet" unless -network says otherwise, as an app
// in development has; `make run` (scripts/run.sh, examples/run.Caddyfile)
// uses the same network. A pi_guard pointed at it needs network
// "Pi Testnet": the guard's default, "Pi Network", refuses its payments
// with wrong_network.
//
// It prints one line with the API base URL, the control URL, the Horizon URL
// and the network, one line with the pi_guard settings that match, and one
// with the URL of its fake Pi SDK (a drop-in for https://sdk.minepi.com/pi-sdk.js
// that runs a Pi app's frontend against it), and shuts down cleanly on SIGINT
// or SIGTERM. Payments are created and paid through the control API (see
// package pitest and docs/fakepi.md).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
	"github.com/caddy-pi-guard/caddy-pi-guard/piclient/pitest"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		os.Exit(0)
	case err != nil:
		fmt.Fprintln(os.Stderr, "fakepi:", err)
		os.Exit(1)
	}
}

// defaultNetwork is the network of the fake's payments unless -network says
// otherwise; scripts/run.sh and examples/run.Caddyfile use the same.
const defaultNetwork = piclient.NetworkTestnet

// run serves until ctx is done.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("fakepi", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:8090", "address to listen on")
	apiKey := fs.String("api-key", pitest.DefaultAPIKey, "the app's server API key")
	network := fs.String("network", defaultNetwork, `network of new payments ("Pi Testnet" or "Pi Network"); pi_guard's network must match`)
	wallet := fs.String("wallet", "", "the app's wallet address (default: a random one)")
	latency := fs.Duration("latency", 0, "latency added to every API and Horizon call")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	s, err := pitest.NewServerAt(*addr, pitest.Options{APIKey: *apiKey, Network: *network, Wallet: *wallet})
	if err != nil {
		return err
	}
	defer s.Close()
	s.SetLatency(*latency)
	fmt.Fprintf(stdout, "fakepi: api %s control %s horizon %s (network %q, wallet %s)\n",
		s.URL, s.ControlURL, s.HorizonURL, s.Network, s.Wallet)
	fmt.Fprintf(stdout, "fakepi: pi_guard settings that match: api_url %s, network %q\n", s.URL, s.Network)
	fmt.Fprintf(stdout, "fakepi: fake Pi SDK for a frontend: <script src=\"%s/pi-sdk.js\"></script>\n", strings.TrimSuffix(s.URL, "/v2"))
	<-ctx.Done()
	done := make(chan struct{})
	go func() { s.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		return errors.New("shutdown timed out")
	}
	return nil
}
