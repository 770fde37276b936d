// Command piguard-bench is the load generator and test upstream of `make
// bench` (scripts/bench.sh), which starts everything it talks to on loopback:
//
//	piguard-bench upstream    -addr 127.0.0.1:18404
//	piguard-bench passthrough -guard http://127.0.0.1:18401 -plain http://127.0.0.1:18402
//	piguard-bench payments    -guard http://127.0.0.1:18401 -fakepi http://127.0.0.1:18405 -log caddy.log -pid 123 -summary guard.json
//	piguard-bench compare     -guard guard.json -node node.json -sync-dir storage/
//	piguard-bench million     -guard http://127.0.0.1:18408 -fakepi http://127.0.0.1:18405 -flows 1000000 -pid 123 -storage dir/
//	piguard-bench gobaseline  -addr 127.0.0.1:18409 -pi-url http://127.0.0.1:18405/v2 -api-key KEY
//	piguard-bench beforeafter -round before-1.json,after-1.json -round after-2.json,before-2.json -gofloor gofloor.json -passthrough passthrough.json
//
// upstream is a tiny HTTP server that answers every request 200 with a short
// body. passthrough compares requests that are not payment routes through a
// Caddy site with pi_guard + reverse_proxy and one with reverse_proxy alone,
// alternating between them in rounds. payments runs whole payment flows
// (create at the fake Pi, approve through Caddy, submit at the fake, complete
// through Caddy) at several concurrencies and Pi latencies, and reads the
// guard's own log lines to tell the time the guard adds from Pi's; pointed at
// the Node/Express baseline (bench/node-baseline) it measures that instead.
// With -pid it reads the server's CPU time and RSS from /proc, with -pi-pid
// the fake Pi's CPU time, and it always measures its own. compare puts the
// guard and the baseline side by side against the targets of issue 15, and
// tells the flows/s this machine allows even a server of zero CPU. million
// runs the same flow n times against one guard site and, every k flows,
// records Caddy's RSS and Go heap, the site's records on disk and the fake
// Pi's RSS: does memory stay bounded over a million payments? gobaseline
// serves the Node baseline's routes in plain Go (net/http, a keep-alive
// client, encoding/json, nothing durable): the "Go floor", what a flow's
// HTTP exchanges cost at least in Go, which payments measures beside the
// guard and Node, and compare sets the guard's CPU per flow against.
// beforeafter compares the guard's own cost per payment (Caddy's CPU per
// flow less the Go floor's and less Caddy's cost of proxying the flow's two
// requests, from passthrough -summary) of two builds, from payments runs
// against each that alternated in rounds.
//
// Each benchmark prints Markdown tables on standard output.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	var err error
	switch cmd, args := os.Args[1], os.Args[2:]; cmd {
	case "upstream":
		err = upstream(ctx, args)
	case "passthrough":
		err = passthrough(ctx, args, os.Stdout)
	case "payments":
		err = payments(ctx, args, os.Stdout)
	case "compare":
		err = compare(args, os.Stdout)
	case "million":
		err = million(ctx, args, os.Stdout)
	case "gobaseline":
		err = gobaseline(ctx, args)
	case "beforeafter":
		err = beforeAfter(args, os.Stdout)
	case "-h", "-help", "--help", "help":
		usage()
		return
	default:
		fmt.Fprintf(os.Stderr, "piguard-bench: unknown command %q\n", cmd)
		usage()
		os.Exit(2)
	}
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "piguard-bench:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprint(os.Stderr, `usage: piguard-bench <command> [flags]

commands:
  upstream     serve 200 "hello" on every path (the benchmarks' upstream app)
  passthrough  pi_guard + reverse_proxy against reverse_proxy alone, alternating
  payments     payment flows through pi_guard (or the Node baseline) against the fake Pi platform
  compare      the guard and the Node baseline side by side, from payments -summary files
  million      N payment flows against one guard site: memory and records on disk every K flows
  gobaseline   serve the Node baseline's routes in plain Go (the "Go floor" of make bench)
  beforeafter  the guard's own cost per payment of two builds, from payments -summary files of alternating rounds

Run "piguard-bench <command> -h" for a command's flags.
`)
}

// upstreamBody is what the upstream answers; small, like a typical API reply.
const upstreamBody = "hello from the benchmark upstream\n"

// upstream serves until ctx is done.
func upstream(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("upstream", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:18404", "listen address (loopback)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	body := []byte(upstreamBody)
	return serveUntilDone(ctx, "upstream", *addr, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		h := w.Header()
		h.Set("Content-Type", "text/plain; charset=utf-8")
		h.Set("Content-Length", strconv.Itoa(len(body)))
		_, _ = w.Write(body)
	}))
}

// serveUntilDone serves handler on addr until ctx is done, then shuts the
// server down; name goes into its "listening" line.
func serveUntilDone(ctx context.Context, name, addr string, handler http.Handler) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	fmt.Fprintf(os.Stderr, "piguard-bench %s: listening on http://%s\n", name, ln.Addr())
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// intList parses "1,16,64".
func intList(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("%q is not a non-negative integer", f)
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, errors.New("empty list")
	}
	return out, nil
}

// drain reads and closes a response body so that its connection is reused.
func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}
