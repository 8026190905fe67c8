package main

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/evorelay/evorelay/sdk"
	"github.com/evorelay/evorelay/sdk/events"
)

// process are the EVORELAY_SQS_* settings.
type process struct {
	region          string
	endpoint        string
	accessKeyID     string
	secretAccessKey string
	sessionToken    string
	accountID       string
	queueURLPrefix  string
	naming          queueNaming
	groupBy         groupBy
	// retention is MessageRetentionPeriod of the queues the sink creates
	// (message_retention); 0 leaves SQS's default (4 days).
	retention time.Duration
}

func envName(key string) string { return "EVORELAY_SQS_" + strings.ToUpper(key) }

var accountIDPattern = regexp.MustCompile(`^[0-9]{12}$`)

// parseProcess reads and checks the EVORELAY_SQS_* variables and warns
// about those it does not know. Errors name the variable.
func parseProcess(cfg sdk.Config) (process, error) {
	p := process{groupBy: groupByInstance}
	err := cfg.ReadSettings(sdk.Settings{
		"region": sdk.Text(&p.region),
		"endpoint": func(v string) (err error) {
			if p.endpoint, err = parseHTTPURL(v); err != nil {
				return fmt.Errorf("%v; expected e.g. http://127.0.0.1:4100", err)
			}
			return nil
		},
		"access_key_id":     sdk.Text(&p.accessKeyID),
		"secret_access_key": sdk.Text(&p.secretAccessKey),
		"session_token":     sdk.Text(&p.sessionToken),
		"account_id": func(v string) error {
			if !accountIDPattern.MatchString(v) {
				return fmt.Errorf("%q is not an AWS account id (12 digits)", v)
			}
			p.accountID = v
			return nil
		},
		"queue_url_prefix": func(v string) error {
			u, err := parseHTTPURL(v)
			if err != nil {
				return fmt.Errorf("%v; expected e.g. https://sqs.us-east-1.amazonaws.com/123456789012", err)
			}
			p.queueURLPrefix = strings.TrimRight(u, "/")
			return nil
		},
		"global":        sdk.Bool(&p.naming.Global),
		"global_prefix": sdk.Text(&p.naming.Prefix),
		"global_queue":  sdk.Text(&p.naming.Single),
		"message_retention": func(v string) error {
			d, err := sdk.ParseDuration(v)
			if err != nil || d < time.Minute || d > 14*24*time.Hour || d%time.Second != 0 {
				return fmt.Errorf("%q: want whole seconds from 1m to 336h (14 days), SQS's range, e.g. 6h", v)
			}
			p.retention = d
			return nil
		},
		"group_by": func(v string) error {
			switch v {
			case "instance":
				p.groupBy = groupByInstance
			case "chat":
				p.groupBy = groupByChat
			default:
				return fmt.Errorf("%q: want instance or chat", v)
			}
			return nil
		},
	}, envName(""))
	if err != nil {
		return p, err
	}
	if (p.accessKeyID == "") != (p.secretAccessKey == "") {
		missing, set := envName("secret_access_key"), envName("access_key_id")
		if p.accessKeyID == "" {
			missing, set = set, missing
		}
		return p, fmt.Errorf("%s: not set, but %s is; set both for static credentials, or neither for the AWS SDK's default chain", missing, set)
	}
	if p.sessionToken != "" && p.accessKeyID == "" {
		return p, fmt.Errorf("%s: needs %s and %s", envName("session_token"), envName("access_key_id"), envName("secret_access_key"))
	}
	if single := p.naming.Single; single != "" {
		if !p.naming.Global {
			return p, fmt.Errorf("%s: applies only when %s is true", envName("global_queue"), envName("global"))
		}
		if !strings.HasSuffix(single, fifoSuffix) {
			single += fifoSuffix
		}
		if err := checkQueueName(single); err != nil {
			return p, fmt.Errorf("%s: %v", envName("global_queue"), err)
		}
		p.naming.Single = single
	} else if p.naming.Global {
		if p.naming.Prefix == "" {
			return p, fmt.Errorf("%s: required when %s is true (queues are named <prefix>_<event>.fifo), or set %s for one queue",
				envName("global_prefix"), envName("global"), envName("global_queue"))
		}
		// The longest event name decides whether every queue name fits.
		for _, ev := range events.All() {
			if err := checkQueueName(queueName(p.naming, "", ev)); err != nil {
				return p, fmt.Errorf("%s: %v", envName("global_prefix"), err)
			}
		}
	}
	return p, nil
}

func parseHTTPURL(v string) (string, error) {
	u, err := url.Parse(v)
	if err != nil {
		return "", err
	}
	if u.User != nil {
		// It would be logged; credentials have variables of their own.
		return "", errors.New("the URL carries credentials; give them in EVORELAY_SQS_ACCESS_KEY_ID and EVORELAY_SQS_SECRET_ACCESS_KEY")
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("%q is not an http(s) URL with a host", v)
	}
	return v, nil
}
