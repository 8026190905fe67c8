package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/evorelay/evorelay/sdk/events"
)

// SQS limits on names and ids.
const (
	maxQueueNameLen = 80  // queue names, ".fifo" included
	maxMessageIDLen = 128 // MessageGroupId and MessageDeduplicationId
	fifoSuffix      = ".fifo"
)

// queueNaming is where an event goes: per instance (the default), per
// event shared by every instance (Prefix), or one queue for everything
// (Single).
type queueNaming struct {
	Global bool
	Prefix string // global: queues are <Prefix>_<event>.fifo
	Single string // global: every event goes to this queue (".fifo" included)
}

// queueName is the FIFO queue an instance's event goes to:
// <instance>_<event in snake case>.fifo, e.g. inst_messages_upsert.fifo;
// in global mode <prefix>_<event>.fifo, or the single global queue.
func queueName(n queueNaming, instance, event string) string {
	switch {
	case n.Global && n.Single != "":
		return n.Single
	case n.Global:
		return n.Prefix + "_" + events.Snake(event) + fifoSuffix
	}
	return instance + "_" + events.Snake(event) + fifoSuffix
}

// checkQueueName reports why SQS would refuse name as a FIFO queue name:
// at most 80 characters of A-Z, a-z, 0-9, '-' and '_', ending in ".fifo".
func checkQueueName(name string) error {
	base, ok := strings.CutSuffix(name, fifoSuffix)
	if !ok {
		return fmt.Errorf("queue name %q does not end in %q, as a FIFO queue's must", name, fifoSuffix)
	}
	if len(name) > maxQueueNameLen {
		return fmt.Errorf("queue name %q is %d characters; SQS allows at most %d", name, len(name), maxQueueNameLen)
	}
	if base == "" {
		return fmt.Errorf("queue name %q is empty before %q", name, fifoSuffix)
	}
	for _, r := range base {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return fmt.Errorf("queue name %q has %q; SQS allows only A-Z, a-z, 0-9, '-' and '_'", name, r)
		}
	}
	return nil
}

// groupBy is what MessageGroupId orders by.
type groupBy int

const (
	groupByInstance groupBy = iota // every event of an instance in order
	groupByChat                    // events of one chat in order, chats in parallel
)

// groupID is a message's MessageGroupId: the instance, or with group_by
// chat the event's chat (events.Chat: data.key.remoteJid, else
// data.remoteJid) when it has one. A value SQS would refuse (see
// messageID) is made acceptable.
func groupID(by groupBy, instance string, envelope []byte) string {
	if by == groupByChat {
		if chat := events.Chat(envelope); chat != "" {
			return messageID(chat)
		}
	}
	return messageID(instance)
}

// messageID makes s acceptable as a MessageGroupId or
// MessageDeduplicationId: 1 to 128 of printable ASCII without space.
// An acceptable s is kept; any other is replaced by the hex SHA-256 of it,
// so that the same input always gives the same id and two different ones
// almost never collide.
func messageID(s string) string {
	if validMessageID(s) {
		return s
	}
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func validMessageID(s string) bool {
	if s == "" || len(s) > maxMessageIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}
