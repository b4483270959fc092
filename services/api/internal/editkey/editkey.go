// Package editkey derives the edit keys of posts made without authentication: whoever
// holds a message's key may edit and delete it. A key is HMAC-SHA256(secret, room + "\x00"
// + id), base64url without padding, so nothing per message is stored and an idempotent
// retry of a post answers the same key. The secret lives in a JetStream key-value bucket,
// created once and shared by every api replica.
package editkey

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"

	"github.com/nats-io/nats.go/jetstream"
)

// Names in NATS.
const (
	Bucket    = "CHAT_SECRETS" // the key-value bucket holding the api's secrets
	SecretKey = "edit-key"     // the edit keys' secret in it
)

// SecretBytes is the size of a secret this package creates; a shorter stored one is refused.
const SecretBytes = 32

// Keys computes and checks edit keys with one secret.
type Keys struct {
	// keyed is HMAC-SHA256 with the secret already absorbed; each key clones it, which
	// spares hashing the padded secret again (most of an edit key's cost).
	keyed hash.Cloner
}

// New returns Keys on secret (at least SecretBytes long).
func New(secret []byte) (*Keys, error) {
	if len(secret) < SecretBytes {
		return nil, fmt.Errorf("edit key secret: %d bytes, want at least %d", len(secret), SecretBytes)
	}
	keyed, ok := hmac.New(sha256.New, secret).(hash.Cloner)
	if !ok {
		return nil, errors.New("edit key: HMAC-SHA256 cannot be cloned")
	}
	return &Keys{keyed: keyed}, nil
}

// Open reads the secret from the bucket, creating bucket and secret if absent (whichever
// replica creates it first wins; the others read the winner's). replicas is the bucket's
// replica count when it has to be created.
func Open(ctx context.Context, js jetstream.JetStream, replicas int) (*Keys, error) {
	if replicas < 1 {
		replicas = 1
	}
	kv, err := js.KeyValue(ctx, Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:      Bucket,
			Description: "chat api secrets (the edit keys' HMAC secret)",
			History:     1,
			Storage:     jetstream.FileStorage,
			Replicas:    replicas,
		})
		if errors.Is(err, jetstream.ErrBucketExists) {
			kv, err = js.KeyValue(ctx, Bucket) // another replica created it meanwhile
		}
	}
	if err != nil {
		return nil, fmt.Errorf("key-value bucket %s: %w", Bucket, err)
	}
	secret := make([]byte, SecretBytes)
	if _, err := rand.Read(secret); err != nil {
		return nil, fmt.Errorf("edit key secret: %w", err)
	}
	if _, err := kv.Create(ctx, SecretKey, secret); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		return nil, fmt.Errorf("create %s/%s: %w", Bucket, SecretKey, err)
	}
	// Whether this replica created it or another did: use what is stored.
	e, err := kv.Get(ctx, SecretKey)
	if err != nil {
		return nil, fmt.Errorf("read %s/%s: %w", Bucket, SecretKey, err)
	}
	k, err := New(e.Value())
	if err != nil {
		return nil, fmt.Errorf("%s/%s: %w", Bucket, SecretKey, err)
	}
	return k, nil
}

// Key is the edit key of message id in room.
func (k *Keys) Key(room, id string) string {
	return base64.RawURLEncoding.EncodeToString(k.mac(room, id))
}

// Check reports whether key is the edit key of message id in room (in constant time).
func (k *Keys) Check(room, id, key string) bool {
	got, err := base64.RawURLEncoding.DecodeString(key)
	return err == nil && hmac.Equal(got, k.mac(room, id))
}

func (k *Keys) mac(room, id string) []byte {
	h, err := k.keyed.Clone()
	if err != nil {
		panic("edit key: " + err.Error()) // New checked that it clones
	}
	h.Write([]byte(room))
	h.Write([]byte{0})
	h.Write([]byte(id))
	return h.Sum(nil)
}
