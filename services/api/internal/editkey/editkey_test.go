package editkey

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chatrt/chat/harness/chattest"
)

// TestReplicasShareOneSecret: replicas opening the bucket at once (on their own
// connections) all end with the one stored secret, and a restart reads it again.
func TestReplicasShareOneSecret(t *testing.T) {
	n := chattest.StartNATS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const replicas = 6
	keys := make([]*Keys, replicas)
	var wg sync.WaitGroup
	for i := range replicas {
		_, js := n.Connect(t)
		wg.Go(func() {
			k, err := Open(ctx, js, 1)
			if err != nil {
				t.Error(err)
				return
			}
			keys[i] = k
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	want := keys[0].Key("general", "01J0000000000000000000000")
	for i, k := range keys {
		if got := k.Key("general", "01J0000000000000000000000"); got != want {
			t.Fatalf("replica %d computes %q, replica 0 %q", i, got, want)
		}
	}
	n.Stop()
	n.Start()
	_, js := n.Connect(t)
	k, err := Open(ctx, js, 1)
	if err != nil {
		t.Fatal(err)
	}
	if k.Key("general", "01J0000000000000000000000") != want {
		t.Fatal("the secret changed across a NATS restart")
	}
}

func TestKeyAndCheck(t *testing.T) {
	k, err := New([]byte(strings.Repeat("s", SecretBytes)))
	if err != nil {
		t.Fatal(err)
	}
	key := k.Key("general", "id-1")
	if len(key) != 43 || strings.ContainsAny(key, "+/=") {
		t.Fatalf("key %q is not 43 characters of unpadded base64url", key)
	}
	if !k.Check("general", "id-1", key) {
		t.Fatal("its own key does not check")
	}
	other, _ := New([]byte(strings.Repeat("t", SecretBytes)))
	for _, c := range []struct{ room, id, key string }{
		{"general", "id-2", key},                          // another message
		{"genera", "lid-1", key},                          // room and id are separated
		{"other", "id-1", key},                            // another room
		{"general", "id-1", key[:42]},                     // truncated
		{"general", "id-1", key + "="},                    // padded
		{"general", "id-1", ""},                           // none
		{"general", "id-1", other.Key("general", "id-1")}, // another secret's
	} {
		if k.Check(c.room, c.id, c.key) {
			t.Errorf("Check(%q, %q, %q) = true", c.room, c.id, c.key)
		}
	}
	if _, err := New([]byte("short")); err == nil {
		t.Fatal("a short secret was accepted")
	}
}

// TestShortStoredSecretRefused: a bucket holding a secret too short to be one (an
// operator's mistake) makes Open fail rather than sign with it.
func TestShortStoredSecretRefused(t *testing.T) {
	n := chattest.StartNATS(t)
	_, js := n.Connect(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := Open(ctx, js, 1); err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, Bucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, SecretKey, []byte("short")); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, js, 1); err == nil || !strings.Contains(err.Error(), "at least") {
		t.Fatalf("Open with a short stored secret: %v", err)
	}
}
