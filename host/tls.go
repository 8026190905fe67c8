package main

import (
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

// certCheckEvery is how often a handshake may look at the certificate
// files for a change.
const certCheckEvery = time.Second

// listenTLS wraps ln in TLS with the certificate and key in certFile and
// keyFile (EVORELAY_TLS_CERT_FILE, EVORELAY_TLS_KEY_FILE), reloaded when
// either changes on disk, as cert-manager renews them in place. A pair
// that does not load at start is an error; a renewed pair that does not
// load is logged, and the previous one is served until it does.
func listenTLS(ln net.Listener, certFile, keyFile string, log hclog.Logger) (net.Listener, error) {
	r := &certReloader{certFile: certFile, keyFile: keyFile, log: log}
	if err := r.load(); err != nil {
		return nil, fmt.Errorf("EVORELAY_TLS_CERT_FILE, EVORELAY_TLS_KEY_FILE: %w", err)
	}
	return tls.NewListener(ln, &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: r.get,
		NextProtos:     []string{"h2", "http/1.1"},
	}), nil
}

// certReloader serves a certificate from files, reloading it on change.
type certReloader struct {
	certFile, keyFile string
	log               hclog.Logger

	mu      sync.Mutex
	cert    *tls.Certificate
	stamp   string // the files' sizes and modification times when loaded
	checked time.Time
}

// get is tls.Config.GetCertificate.
func (r *certReloader) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if time.Since(r.checked) >= certCheckEvery {
		r.checked = time.Now()
		if stamp, err := r.stampNow(); err == nil && stamp != r.stamp {
			if err := r.loadLocked(); err != nil {
				r.log.Error("TLS certificate changed on disk but does not load; still serving the previous one", "cert_file", r.certFile, "key_file", r.keyFile, "error", err)
			} else {
				r.log.Info("TLS certificate reloaded", "cert_file", r.certFile, "not_after", r.cert.Leaf.NotAfter)
			}
		}
	}
	return r.cert, nil
}

func (r *certReloader) load() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.loadLocked()
}

func (r *certReloader) loadLocked() error {
	stamp, err := r.stampNow()
	if err != nil {
		return err
	}
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return err
	}
	r.cert, r.stamp = &cert, stamp
	return nil
}

// stampNow describes both files as they are now.
func (r *certReloader) stampNow() (string, error) {
	var stamp string
	for _, f := range []string{r.certFile, r.keyFile} {
		fi, err := os.Stat(f)
		if err != nil {
			return "", err
		}
		stamp += fmt.Sprintf("%d/%d;", fi.Size(), fi.ModTime().UnixNano())
	}
	return stamp, nil
}
