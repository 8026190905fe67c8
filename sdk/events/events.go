// Package events is the catalogue of the events a WhatsApp engine emits and
// the conversions between their two spellings: constants (MESSAGES_UPSERT),
// used in settings and by the seed, and wire names (messages.upsert), used by
// Evolution API on the wire. It also holds the envelope every sink receives.
//
// It is pure data and string functions: no I/O, no configuration.
package events

import (
	"sort"
	"strings"
)

// catalogue lists every known event as constant → wire name. The seed's 21
// come first, then the ones Evolution API v2 adds.
var catalogue = []struct{ constant, wire string }{
	{"APPLICATION_STARTUP", "application.startup"},
	{"QRCODE_UPDATED", "qrcode.updated"},
	{"CONNECTION_UPDATE", "connection.update"},
	{"MESSAGES_UPSERT", "messages.upsert"},
	{"MESSAGES_UPDATE", "messages.update"},
	{"MESSAGES_DELETE", "messages.delete"},
	{"SEND_MESSAGE", "send.message"},
	{"CONTACTS_SET", "contacts.set"},
	{"CONTACTS_UPSERT", "contacts.upsert"},
	{"CONTACTS_UPDATE", "contacts.update"},
	{"PRESENCE_UPDATE", "presence.update"},
	{"CHATS_SET", "chats.set"},
	{"CHATS_UPSERT", "chats.upsert"},
	{"CHATS_UPDATE", "chats.update"},
	{"CHATS_DELETE", "chats.delete"},
	{"GROUPS_UPSERT", "groups.upsert"},
	// The engine sends groups.update for the event its settings call
	// GROUP_UPDATE; the wire name follows the engine.
	{"GROUP_UPDATE", "groups.update"},
	{"GROUP_PARTICIPANTS_UPDATE", "group-participants.update"},
	{"NEW_JWT_TOKEN", "new.jwt.token"},
	{"TYPEBOT_START", "typebot.start"},
	{"TYPEBOT_CHANGE_STATUS", "typebot.change-status"},

	{"MESSAGES_SET", "messages.set"},
	{"MESSAGES_EDITED", "messages.edited"},
	{"SEND_MESSAGE_UPDATE", "send.message.update"},
	{"LABELS_EDIT", "labels.edit"},
	{"LABELS_ASSOCIATION", "labels.association"},
	{"CALL", "call"},
	{"REMOVE_INSTANCE", "remove.instance"},
	{"LOGOUT_INSTANCE", "logout.instance"},
	{"INSTANCE_CREATE", "instance.create"},
	{"INSTANCE_DELETE", "instance.delete"},
	{"STATUS_INSTANCE", "status.instance"},
}

// aliases are other spellings engines and clients use for known events.
var aliases = map[string]string{
	"GROUPS_UPDATE": "GROUP_UPDATE",
	"group.update":  "GROUP_UPDATE",
	"new.jwt":       "NEW_JWT_TOKEN",
	"NEW_JWT":       "NEW_JWT_TOKEN",
}

var (
	byConstant = map[string]string{} // constant → wire
	byWire     = map[string]string{} // wire → constant
	all        []string
)

func init() {
	for _, e := range catalogue {
		byConstant[e.constant] = e.wire
		byWire[e.wire] = e.constant
		all = append(all, e.constant)
	}
}

// All returns every known event constant, the seed's first.
func All() []string { return append([]string(nil), all...) }

// Lookup returns the constant for a known event given in either spelling
// (MESSAGES_UPSERT, messages.upsert, or an alias such as groups.update).
func Lookup(name string) (constant string, ok bool) {
	if _, ok := byConstant[name]; ok {
		return name, true
	}
	if c, ok := byWire[name]; ok {
		return c, true
	}
	if c, ok := aliases[name]; ok {
		return c, true
	}
	return "", false
}

// Normalize returns the constant for any event name an engine may send.
// Known names map through Lookup; an unknown one is converted by the rule
// the engines use ('.' and '-' become '_', upper case), so an event added
// to a newer engine is still carried to sinks that take every event.
// It returns "" for a name that is not a plausible event name.
func Normalize(name string) string {
	if c, ok := Lookup(name); ok {
		return c
	}
	if name == "" || len(name) > 64 {
		return ""
	}
	var b strings.Builder
	for _, r := range name {
		switch {
		case r >= 'a' && r <= 'z':
			b.WriteRune(r - 'a' + 'A')
		case r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_':
			b.WriteRune(r)
		case r == '.' || r == '-':
			b.WriteByte('_')
		default:
			return ""
		}
	}
	// Another spelling of a known event or alias (groups-update) is that
	// event.
	if c, ok := Lookup(b.String()); ok {
		return c
	}
	return b.String()
}

// Wire returns the wire name of an event constant (messages.upsert). An
// unknown constant is converted by the engines' rule: lower case, '_' → '.'.
func Wire(constant string) string {
	if w, ok := byConstant[constant]; ok {
		return w
	}
	return strings.ReplaceAll(strings.ToLower(constant), "_", ".")
}

// Snake returns the constant in lower case (messages_upsert,
// group_participants_update): the form used in SQS queue names.
func Snake(constant string) string { return strings.ToLower(constant) }

// Naming is how event names are written to sinks (EVORELAY_NAMING).
type Naming int

const (
	// NamingSeed writes constants (MESSAGES_UPSERT) and the by-events
	// suffix /messages_upsert. It is the default.
	NamingSeed Naming = iota
	// NamingEvolution writes wire names (messages.upsert) and the by-events
	// suffix /messages-upsert, as Evolution API does.
	NamingEvolution
)

// ParseNaming reads an EVORELAY_NAMING value; "" means seed.
func ParseNaming(s string) (Naming, bool) {
	switch s {
	case "", "seed":
		return NamingSeed, true
	case "evolution":
		return NamingEvolution, true
	}
	return NamingSeed, false
}

func (n Naming) String() string {
	if n == NamingEvolution {
		return "evolution"
	}
	return "seed"
}

// Name writes an event constant as the naming mode wants it.
func (n Naming) Name(constant string) string {
	if n == NamingEvolution {
		return Wire(constant)
	}
	return constant
}

// Suffix is the path a webhook with webhook_by_events appends to its URL:
// /messages_upsert (seed) or /messages-upsert (evolution).
func (n Naming) Suffix(constant string) string {
	if n == NamingEvolution {
		return "/" + strings.NewReplacer(".", "-", "_", "-").Replace(Wire(constant))
	}
	return "/" + Snake(constant)
}

// Unknown returns the names in list that are not known events, sorted.
func Unknown(list []string) []string {
	var bad []string
	for _, n := range list {
		if _, ok := Lookup(n); !ok {
			bad = append(bad, n)
		}
	}
	sort.Strings(bad)
	return bad
}
