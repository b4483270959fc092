// Package natsconn_test checks pkg/natsconn against a real nats-server. It lives in the
// harness module so that pkg's go.mod does not require nats-server (pkg holds the
// contract; a test in pkg importing the harness would make the modules require each other).
package natsconn_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chatrt/chat/pkg/natsconn"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

func startServer(t *testing.T, opts *server.Options) *server.Server {
	t.Helper()
	opts.Host, opts.Port, opts.NoLog, opts.NoSigs = "127.0.0.1", server.RANDOM_PORT, true, true
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats not ready")
	}
	t.Cleanup(s.Shutdown)
	return s
}

func connect(t *testing.T, url string, cfg natsconn.NATS) (*nats.Conn, error) {
	t.Helper()
	opts, err := natsconn.Options(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return nats.Connect(url, append(opts, nats.Timeout(5*time.Second))...)
}

// TestNkeyWithPublishPermissions is the account setup of the README's Security section: a
// user that may publish only to chat.messages.>.
func TestNkeyWithPublishPermissions(t *testing.T) {
	user, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := user.PublicKey()
	seed, _ := user.Seed()
	seedFile := filepath.Join(t.TempDir(), "user.nk")
	if err := os.WriteFile(seedFile, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, &server.Options{Nkeys: []*server.NkeyUser{{
		Nkey: pub,
		Permissions: &server.Permissions{
			Publish:   &server.SubjectPermission{Allow: []string{"chat.messages.>", "$JS.API.INFO"}},
			Subscribe: &server.SubjectPermission{Allow: []string{"_INBOX.>"}},
		},
	}}})
	if nc, err := nats.Connect(s.ClientURL(), nats.Timeout(5*time.Second)); err == nil {
		nc.Close()
		t.Fatal("connected without credentials")
	}
	errs := make(chan error, 10)
	opts, err := natsconn.Options(natsconn.NATS{NKeySeedFile: seedFile})
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(s.ClientURL(), append(opts, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err }))...)
	if err != nil {
		t.Fatalf("connect with nkey: %v", err)
	}
	defer nc.Close()
	if err := nc.Publish("chat.messages.general", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errs:
		t.Fatalf("allowed publish refused: %v", err)
	default:
	}
	_ = nc.Publish("chat.deadletter", []byte(`{}`))
	_ = nc.Flush()
	select {
	case err := <-errs:
		if err == nil {
			t.Fatal("nil error")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("publish outside chat.messages.> was not refused")
	}
}

func TestTLS(t *testing.T) {
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	srvKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	srvDER, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(2),
		Subject: pkix.Name{CommonName: "127.0.0.1"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}, ca, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "ca.pem")
	_ = os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600)
	s := startServer(t, &server.Options{TLSConfig: &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{srvDER}, PrivateKey: srvKey}},
		MinVersion:   tls.VersionTLS12,
	}, TLSTimeout: 5})
	url := "tls://" + s.Addr().String()
	if nc, err := nats.Connect(url, nats.Timeout(5*time.Second)); err == nil {
		nc.Close()
		t.Fatal("connected without the CA")
	}
	nc, err := connect(t, url, natsconn.NATS{TLSCA: caFile})
	if err != nil {
		t.Fatalf("connect with CHAT_NATS_TLS_CA: %v", err)
	}
	nc.Close()
}

// TestConnectShutdown: Connect names the client and Shutdown returns only after the drain
// has processed what a subscription held.
func TestConnectShutdown(t *testing.T) {
	s := startServer(t, &server.Options{})
	nc, err := natsconn.Connect(natsconn.NATS{URL: s.ClientURL()}, "chat-test", nil, nats.Timeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if cz, err := s.Connz(nil); err != nil || len(cz.Conns) != 1 || cz.Conns[0].Name != "chat-test" {
		t.Fatalf("connz = %+v, %v; want one connection named chat-test", cz, err)
	}
	handled := make(chan struct{}, 1)
	release := make(chan struct{})
	if _, err := nc.Subscribe("x", func(*nats.Msg) {
		<-release
		handled <- struct{}{}
	}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Publish("x", nil); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- nc.Shutdown(10 * time.Second) }()
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned before the held message was handled: %v", err)
	case <-time.After(100 * time.Millisecond): // a negative check: it must still be waiting
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	select {
	case <-handled:
	default:
		t.Fatal("Shutdown returned without the message handled")
	}
	if !nc.IsClosed() {
		t.Fatal("not closed after Shutdown")
	}
	if err := nc.Shutdown(time.Second); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}
}

func TestConnectErrors(t *testing.T) {
	if _, err := natsconn.Connect(natsconn.NATS{URL: "nats://127.0.0.1:1", Creds: "/nonexistent"}, "x", nil); err == nil {
		t.Fatal("missing creds file accepted")
	}
	_, err := natsconn.Connect(natsconn.NATS{URL: "nats://u:secret@127.0.0.1:1"}, "x", nil, nats.Timeout(time.Second))
	if err == nil || strings.Contains(err.Error(), "secret") {
		t.Fatalf("connect to a closed port: %v (want an error without the password)", err)
	}
}
