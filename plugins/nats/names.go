package main

import "strings"

// subjectFor names the subject one event of one instance is published on,
// as Evolution API does: instance.wire (acme.messages.upsert), or in
// global mode prefix.instance.wire. wire is the event's wire name.
func subjectFor(prefix, instance, wire string) string {
	if prefix != "" {
		return prefix + "." + instance + "." + wire
	}
	return instance + "." + wire
}

// subjectProblem says why name cannot stand in a subject as one or more
// tokens, or "" when it can: no empty tokens, no whitespace, and no
// wildcards (a publish subject cannot hold * or >).
func subjectProblem(name string) string {
	switch {
	case name == "":
		return "is empty"
	case strings.ContainsAny(name, " \t\r\n\f\v"):
		return "holds whitespace"
	case strings.ContainsAny(name, "*>"):
		return "holds a wildcard (* or >)"
	case strings.HasPrefix(name, ".") || strings.HasSuffix(name, ".") || strings.Contains(name, ".."):
		return "has an empty subject token (a leading, trailing or doubled dot)"
	}
	return ""
}
