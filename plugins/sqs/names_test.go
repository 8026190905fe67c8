package main

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
)

func TestQueueName(t *testing.T) {
	perInstance := queueNaming{}
	global := queueNaming{Global: true, Prefix: "evo"}
	single := queueNaming{Global: true, Prefix: "evo", Single: "all_events.fifo"}
	tests := []struct {
		naming          queueNaming
		instance, event string
		want            string
	}{
		{perInstance, "inst", "MESSAGES_UPSERT", "inst_messages_upsert.fifo"},
		{perInstance, "inst", "GROUP_PARTICIPANTS_UPDATE", "inst_group_participants_update.fifo"},
		{perInstance, "inst", "GROUP_UPDATE", "inst_group_update.fifo"},
		{perInstance, "inst", "TYPEBOT_CHANGE_STATUS", "inst_typebot_change_status.fifo"},
		{perInstance, "My-Shop_2", "CALL", "My-Shop_2_call.fifo"},
		{global, "inst", "MESSAGES_UPSERT", "evo_messages_upsert.fifo"},
		{global, "other", "MESSAGES_UPSERT", "evo_messages_upsert.fifo"},
		{single, "inst", "CONNECTION_UPDATE", "all_events.fifo"},
	}
	for _, tt := range tests {
		if got := queueName(tt.naming, tt.instance, tt.event); got != tt.want {
			t.Errorf("queueName(%+v, %q, %q) = %q, want %q", tt.naming, tt.instance, tt.event, got, tt.want)
		}
	}
}

func TestCheckQueueName(t *testing.T) {
	tests := []struct {
		name    string
		wantErr string // "" means valid
	}{
		{"inst_messages_upsert.fifo", ""},
		{strings.Repeat("a", 75) + ".fifo", ""},
		{strings.Repeat("a", 76) + ".fifo", "is 81 characters; SQS allows at most 80"},
		{"inst_messages_upsert", `does not end in ".fifo"`},
		{".fifo", "is empty"},
		{"my shop_call.fifo", `has ' '`},
		{"loja.centro_call.fifo", `has '.'`},
		{"josé_call.fifo", `has 'é'`},
	}
	for _, tt := range tests {
		err := checkQueueName(tt.name)
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("checkQueueName(%q) = %v, want nil", tt.name, err)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("checkQueueName(%q) = %v, want an error containing %q", tt.name, err, tt.wantErr)
		}
	}
}

func TestGroupID(t *testing.T) {
	long := strings.Repeat("x", 129)
	tests := []struct {
		by       groupBy
		instance string
		data     string
		want     string
	}{
		{groupByInstance, "inst", `{"key":{"remoteJid":"5511@s.whatsapp.net"}}`, "inst"},
		{groupByChat, "inst", `{"key":{"remoteJid":"5511@s.whatsapp.net"}}`, "5511@s.whatsapp.net"},
		{groupByChat, "inst", `{"key":{"id":"ABC"}}`, "inst"},
		// messages.update: the chat is data.remoteJid.
		{groupByChat, "inst", `{"key":{"id":"ABC"},"remoteJid":"5511@s.whatsapp.net","status":"READ"}`, "5511@s.whatsapp.net"},
		{groupByChat, "inst", `{"key":{"remoteJid":"5511@s.whatsapp.net"},"remoteJid":"120363@g.us"}`, "5511@s.whatsapp.net"},
		{groupByInstance, "inst", `{"remoteJid":"5511@s.whatsapp.net"}`, "inst"},
		{groupByChat, "inst", `{"state":"open"}`, "inst"},
		{groupByChat, "inst", `null`, "inst"},
		{groupByChat, "inst", `[1,2]`, "inst"},
		// Values SQS would refuse become the hex SHA-256 of the value.
		{groupByInstance, "my shop", `{}`, "21e023186c79473d1cbb8d496929bcf1ed296c06fc589b4315e6d18b94c959dd"},
		{groupByChat, "inst", `{"key":{"remoteJid":"` + long + `"}}`, sha256Hex(long)},
	}
	for _, tt := range tests {
		if got := groupID(tt.by, tt.instance, []byte(`{"data":`+tt.data+`}`)); got != tt.want {
			t.Errorf("groupID(%v, %q, %s) = %q, want %q", tt.by, tt.instance, tt.data, got, tt.want)
		}
	}
}

func TestMessageID(t *testing.T) {
	tests := []struct{ in, want string }{
		{"01J0ABCDEF", "01J0ABCDEF"},
		{"a!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~", "a!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"},
		{strings.Repeat("a", 128), strings.Repeat("a", 128)},
		{strings.Repeat("a", 129), sha256Hex(strings.Repeat("a", 129))},
		{"has space", "47b5c36fc0b017ba576f10f988d0cbcbc78256dab5de0e4689980898e7c715e3"},
		{"olá", sha256Hex("olá")},
		{"", sha256Hex("")},
	}
	for _, tt := range tests {
		got := messageID(tt.in)
		if got != tt.want {
			t.Errorf("messageID(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if !validMessageID(got) {
			t.Errorf("messageID(%q) = %q, which SQS would refuse", tt.in, got)
		}
	}
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}
