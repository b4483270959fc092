package chat

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
)

// authorIDPrefix names the scheme of an AuthorID, so that another one can follow it.
const authorIDPrefix = "sha256:"

// AuthorID is how a stored message records who posted it (header Chat-Author): a digest
// of the token's issuer and subject, "" for an anonymous post (no authentication, or a
// token without "sub"). The same person (same iss and sub) always gets the same id,
// whatever the token's name claim says, so a service can compare a request's author with
// a stored message's: the api does for a reused Idempotency-Key.
//
// It is a digest and not the subject itself because the subject is chosen by an identity
// provider: it may be long, contain anything (no header injection, bounded size) or be
// personal data (an e-mail address) that has no business in the bus. It is not keyed: any
// replica of any service computes it without a shared secret, and it is pseudonymous,
// not secret (whoever can read the stream and guess a subject can confirm the guess).
func AuthorID(issuer, subject string) string {
	if subject == "" {
		return ""
	}
	h := sha256.New()
	var n [binary.MaxVarintLen64]byte
	h.Write(n[:binary.PutUvarint(n[:], uint64(len(issuer)))])
	h.Write([]byte(issuer))
	h.Write([]byte(subject))
	var sum [sha256.Size]byte
	return authorIDPrefix + base64.RawURLEncoding.EncodeToString(h.Sum(sum[:0]))
}
