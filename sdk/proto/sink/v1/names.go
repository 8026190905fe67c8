package sinkv1

import (
	"fmt"
	"regexp"
)

// The sink-name rule, shared by the host (which routes /{name}/...) and the
// SDK (which refuses a bad Describe().Name before the host sees it).
var validName = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,31}$`)

// reservedNames are first path segments of the host's own routes: no sink
// can be routed under them. "webhook" is not one: its routes sit beside
// /webhook/evolution/{instance}.
var reservedNames = map[string]bool{
	"events": true, "plugins": true, "healthz": true, "readyz": true, "metrics": true,
	"ws": true, "ws-console": true, "keys": true,
}

// CheckName says what is wrong with a sink name, or returns nil: 1 to 32
// lowercase letters, digits, '_' or '-', starting with a letter, and not a
// route of the host.
func CheckName(name string) error {
	if !validName.MatchString(name) {
		return fmt.Errorf("sink name %q: want 1-32 of a-z, 0-9, '_' or '-', starting with a letter", name)
	}
	if reservedNames[name] {
		return fmt.Errorf("sink name %q is a route of the host; choose another", name)
	}
	return nil
}
