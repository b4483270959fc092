package chat

import (
	"fmt"
	"strings"
)

// NATS names from the contract.
const (
	StreamName        = "CHAT"
	SubjectPrefix     = "chat.messages."
	SubjectWildcard   = "chat.messages.>"
	DeadLetterStream  = "DEADLETTER"
	DeadLetterSubject = "chat.deadletter"
	// PersisterConsumer is the durable consumer on CHAT that all persister replicas
	// share. Its ack floor is a watermark: every stream message at or below it is in
	// history (the api reads it to know which changes history already holds).
	PersisterConsumer = "persister"

	// HeaderMsgID is JetStream's de-duplication header; it carries the message id.
	HeaderMsgID = "Nats-Msg-Id"
	// HeaderAuthor records who posted a message (an AuthorID), when the api knows: it
	// scopes an Idempotency-Key to its author. It stays inside the bus: no service sends
	// it to clients or stores it in history.
	HeaderAuthor = "Chat-Author"
	// HeaderDeadLetterReason and HeaderOriginalSubject annotate dead-lettered payloads.
	HeaderDeadLetterReason = "Chat-Deadletter-Reason"
	HeaderOriginalSubject  = "Chat-Original-Subject"
)

// Subject is the NATS subject of a room. The room must be valid.
func Subject(room string) string { return SubjectPrefix + room }

// RoomFromSubject returns the room of a chat.messages.<room> subject.
func RoomFromSubject(subject string) (string, error) {
	room, ok := strings.CutPrefix(subject, SubjectPrefix)
	if !ok {
		return "", fmt.Errorf("subject %q is not under %s", subject, SubjectPrefix)
	}
	if err := ValidRoom(room); err != nil {
		return "", fmt.Errorf("subject %q: %w", subject, err)
	}
	return room, nil
}
