package config

import (
	"fmt"
	"os"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// pluginsKey is the file's section that holds one map per plugin.
const pluginsKey = "plugins"

// fileValue is one host setting as the file gives it, in the form of an
// environment variable's value.
type fileValue struct {
	value string
	// list is true when the file gave a list, joined with commas.
	list bool
}

// readFile reads the YAML settings file: the host's settings by YAML key,
// and the plugin sections by env-style plugin name. A value that is null
// or empty is left out, as an empty variable is.
func readFile(path string) (map[string]fileValue, map[string]map[string]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("config: -config: %w", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, nil, fmt.Errorf("config: %s: %w", path, err)
	}
	host := make(map[string]fileValue)
	plugins := make(map[string]map[string]string)
	if len(doc.Content) == 0 {
		return host, plugins, nil // an empty file
	}
	root := deref(doc.Content[0])
	if isNull(root) {
		return host, plugins, nil
	}
	if root.Kind != yaml.MappingNode {
		return nil, nil, fmt.Errorf("config: %s:%d: expected a mapping of settings (key: value) at the top", path, root.Line)
	}

	seen := make(map[string]bool)
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], deref(root.Content[i+1])
		key := k.Value
		if seen[key] {
			return nil, nil, fmt.Errorf("config: %s:%d: %s is given twice", path, k.Line, key)
		}
		seen[key] = true

		if key == pluginsKey {
			if err := readPlugins(path, v, plugins); err != nil {
				return nil, nil, err
			}
			continue
		}
		if !hostKeys[envPrefix+strings.ToUpper(key)] || key != strings.ToLower(key) {
			return nil, nil, fmt.Errorf("config: %s:%d: unknown key %q; expected one of %s, or %s", path, k.Line, key, strings.Join(yamlKeys(), ", "), pluginsKey)
		}
		s, list, err := flatten(v)
		if err != nil {
			return nil, nil, fmt.Errorf("config: %s:%d: %s: %w", path, v.Line, key, err)
		}
		if s != "" {
			host[key] = fileValue{value: s, list: list}
		}
	}
	return host, plugins, nil
}

// readPlugins reads the plugins section into out.
func readPlugins(path string, n *yaml.Node, out map[string]map[string]string) error {
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("config: %s:%d: %s: expected a mapping of plugin name to its settings", path, n.Line, pluginsKey)
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		name, sec := n.Content[i].Value, deref(n.Content[i+1])
		env := pluginEnvName(name)
		if _, dup := out[env]; dup {
			return fmt.Errorf("config: %s:%d: %s.%s is given twice", path, n.Content[i].Line, pluginsKey, name)
		}
		m := make(map[string]string)
		out[env] = m
		if isNull(sec) {
			continue
		}
		if sec.Kind != yaml.MappingNode {
			return fmt.Errorf("config: %s:%d: %s.%s: expected a mapping of setting to value", path, sec.Line, pluginsKey, name)
		}
		for j := 0; j+1 < len(sec.Content); j += 2 {
			key := strings.ToLower(sec.Content[j].Value)
			s, _, err := flatten(deref(sec.Content[j+1]))
			if err != nil {
				return fmt.Errorf("config: %s:%d: %s.%s.%s: %w", path, sec.Content[j+1].Line, pluginsKey, name, key, err)
			}
			if s != "" {
				m[key] = s
			}
		}
	}
	return nil
}

// flatten turns a scalar or a list of scalars into the string an
// environment variable would hold; a list is joined with commas.
func flatten(n *yaml.Node) (value string, list bool, err error) {
	switch {
	case isNull(n):
		return "", false, nil
	case n.Kind == yaml.ScalarNode:
		return n.Value, false, nil
	case n.Kind == yaml.SequenceNode:
		if len(n.Content) == 0 {
			return "", true, fmt.Errorf("empty list; expected at least one value")
		}
		items := make([]string, 0, len(n.Content))
		for _, it := range n.Content {
			it = deref(it)
			if it.Kind != yaml.ScalarNode {
				return "", false, fmt.Errorf("expected a list of plain values")
			}
			items = append(items, it.Value)
		}
		return strings.Join(items, ","), true, nil
	}
	return "", false, fmt.Errorf("expected a value or a list of values, not a mapping")
}

func deref(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n == nil || n.Kind == 0 || (n.Kind == yaml.ScalarNode && n.Tag == "!!null")
}

// yamlKeys lists the host's YAML keys, sorted.
func yamlKeys() []string {
	keys := make([]string, 0, len(settings))
	for _, s := range settings {
		keys = append(keys, strings.ToLower(s.key))
	}
	sort.Strings(keys)
	return keys
}
