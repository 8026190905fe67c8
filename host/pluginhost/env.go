package pluginhost

import (
	"strings"
)

// systemEnv are the host variables every plugin process gets: what the Go
// runtime, TLS, proxies, locale and the AWS SDK's default credential chain
// read to find their way. None holds a secret; the AWS keys themselves
// (AWS_ACCESS_KEY_ID and friends) are not among them: give them to the
// sqs plugin as EVORELAY_SQS_ACCESS_KEY_ID.
var systemEnv = map[string]bool{
	"PATH": true, "HOME": true, "USER": true, "LOGNAME": true, "TMPDIR": true, "TZ": true,
	"LANG": true, "LANGUAGE": true,
	"SSL_CERT_FILE": true, "SSL_CERT_DIR": true,
	"HTTP_PROXY": true, "HTTPS_PROXY": true, "NO_PROXY": true,
	"http_proxy": true, "https_proxy": true, "no_proxy": true,
	"GODEBUG": true, "GOMAXPROCS": true, "GOMEMLIMIT": true, "GOGC": true, "GOTRACEBACK": true,
	"GORACE": true, "GOCOVERDIR": true,
	"AWS_REGION": true, "AWS_DEFAULT_REGION": true, "AWS_PROFILE": true,
	"AWS_CONFIG_FILE": true, "AWS_SHARED_CREDENTIALS_FILE": true, "AWS_CA_BUNDLE": true,
	"AWS_ROLE_ARN": true, "AWS_ROLE_SESSION_NAME": true, "AWS_WEB_IDENTITY_TOKEN_FILE": true,
	"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": true, "AWS_CONTAINER_CREDENTIALS_FULL_URI": true,
	"AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": true, "AWS_EC2_METADATA_DISABLED": true,
}

// pluginEnv is the environment plugin name's process starts with, out of
// the host's: the system variables above, LC_* locale variables, and the
// plugin's own EVORELAY_<NAME>_* settings. Never EVORELAY_API_KEY, another
// plugin's settings or anything else the host was given.
func pluginEnv(name string, environ []string) []string {
	own := "EVORELAY_" + strings.ReplaceAll(strings.ToUpper(name), "-", "_") + "_"
	var out []string
	for _, kv := range environ {
		k, _, ok := strings.Cut(kv, "=")
		if !ok {
			continue
		}
		if systemEnv[k] || strings.HasPrefix(k, "LC_") || (strings.HasPrefix(k, own) && len(k) > len(own)) {
			out = append(out, kv)
		}
	}
	return out
}
