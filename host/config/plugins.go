package config

import "strings"

// PluginSettings returns plugin name's global settings: every
// EVORELAY_<NAME>_* variable (NAME is name upper-cased, '-' written '_')
// with the prefix cut and the rest lower-cased, over the keys of the
// plugin's section in the file. The host's own variables are left out even
// when they match the prefix. The map is the caller's; it is never nil.
//
// A plugin whose name extends another's with '_' or '-' shares its prefix:
// plugin "sqs" also sees EVORELAY_SQS_FIFO_URL of a plugin "sqs-fifo", as
// "fifo_url".
func (c *Config) PluginSettings(name string) map[string]string {
	env := pluginEnvName(name)
	out := make(map[string]string)
	for k, v := range c.plugins[env] {
		out[k] = v
	}
	prefix := envPrefix + env + "_"
	for k, v := range c.env {
		if hostKeys[k] || !strings.HasPrefix(k, prefix) || len(k) == len(prefix) {
			continue
		}
		out[strings.ToLower(k[len(prefix):])] = v
	}
	return out
}

// pluginEnvName is how a plugin's name is written in its variables.
func pluginEnvName(name string) string {
	return strings.ReplaceAll(strings.ToUpper(name), "-", "_")
}
