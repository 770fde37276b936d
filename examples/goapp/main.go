// Command goapp is an example upstream Pi app behind caddy-pi-guard. It marks
// an order paid only when the payment callback carries a valid
// Pi-Payment-Verified header, verified with the verify package. At / it
// serves the `make run` demo page (web/, embedded): a shop with a "Pay with
// Pi" button on a simulated Pi SDK, and an attacker panel.
//
// Configuration, from the environment:
//
//	ADDR                  listen address (default ":" + PORT)
//	PORT                  listen port when ADDR is unset (default 8080)
//	PI_GUARD_SIGNING_KEY  the HS256 secret shared with the guard (its
//	                      signing_key), at least 32 bytes; surrounding
//	                      whitespace is ignored, as the guard does
//	PI_GUARD_KEY_ID       optional: the kid of that secret; unset, the
//	                      secret is tried whatever kid the guard uses
//	PI_GUARD_JWKS_FILE    optional: a JWK Set file of the guard's EdDSA
//	                      public keys, instead of or besides the secret
//	PI_GUARD_ISSUER       optional, default caddy-pi-guard
//	PI_GUARD_AUDIENCE     optional, default pi-app
//	CORS_ORIGINS          optional: origins (space-separated, such as
//	                      http://localhost:3000) of a frontend served
//	                      elsewhere that may call the app with credentials
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/caddy-pi-guard/caddy-pi-guard/verify"
)

func main() {
	addr, opts, err := configFromEnv(os.Getenv, os.ReadFile)
	if err != nil {
		log.Fatalf("goapp: %v", err)
	}
	v, err := verify.NewVerifier(opts)
	if err != nil {
		log.Fatalf("goapp: %v", err)
	}
	srv := &http.Server{
		Addr:              addr,
		Handler:           withCORS(strings.Fields(os.Getenv("CORS_ORIGINS")), newApp(v)),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	log.Printf("goapp: example app behind caddy-pi-guard listening on %s", addr)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatalf("goapp: %v", err)
	}
}

// configFromEnv reads the listen address and the verifier options.
func configFromEnv(getenv func(string) string, readFile func(string) ([]byte, error)) (string, verify.Options, error) {
	var o verify.Options
	addr := getenv("ADDR")
	if addr == "" {
		port := getenv("PORT")
		if port == "" {
			port = "8080"
		}
		addr = ":" + port
	}

	if secret := strings.TrimSpace(getenv("PI_GUARD_SIGNING_KEY")); secret != "" {
		k, err := verify.HS256Key(strings.TrimSpace(getenv("PI_GUARD_KEY_ID")), []byte(secret))
		if err != nil {
			return "", o, fmt.Errorf("PI_GUARD_SIGNING_KEY: %w", err)
		}
		o.Keys = append(o.Keys, k)
	}
	if file := getenv("PI_GUARD_JWKS_FILE"); file != "" {
		data, err := readFile(file)
		if err != nil {
			return "", o, fmt.Errorf("PI_GUARD_JWKS_FILE: %w", err)
		}
		keys, err := verify.ParseJWKS(data)
		if err != nil {
			return "", o, fmt.Errorf("PI_GUARD_JWKS_FILE %s: %w", file, err)
		}
		o.Keys = append(o.Keys, keys...)
	}
	if len(o.Keys) == 0 {
		return "", o, errors.New("no key: set PI_GUARD_SIGNING_KEY to the guard's signing_key, or PI_GUARD_JWKS_FILE to its JWK Set")
	}
	o.Issuer = getenv("PI_GUARD_ISSUER")
	o.Audience = getenv("PI_GUARD_AUDIENCE")
	return addr, o, nil
}
