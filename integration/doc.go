// Package integration holds the end-to-end tests of caddy-pi-guard: a real
// in-process Caddy (through caddytest, admin port 2999) loading Caddyfiles
// with the pi_guard handler, in front of a recording upstream app, talking to
// the fake Pi platform from piclient/pitest.
//
// All caddytest-based tests live in this one package, because caddytest runs a
// single Caddy per process on a fixed admin port.
package integration
