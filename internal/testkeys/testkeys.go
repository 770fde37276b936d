// Package testkeys writes Ed25519 key pairs as PEM files, for the tests of
// the guard's EdDSA key configuration.
package testkeys

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
)

// WriteEd25519 writes a fresh key pair into a temporary directory: the
// private key as PKCS#8 (as openssl genpkey writes it) and the public key as
// PKIX (as openssl pkey -pubout writes it). It returns the two paths.
func WriteEd25519(t testing.TB) (privPath, pubPath string) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name, typ string, der []byte, err error) string {
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	privPath = write("key.pem", "PRIVATE KEY", der, err)
	der, err = x509.MarshalPKIXPublicKey(pub)
	pubPath = write("key.pub.pem", "PUBLIC KEY", der, err)
	return privPath, pubPath
}
