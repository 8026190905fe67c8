package configs

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/intstr"
	k8syaml "k8s.io/apimachinery/pkg/util/yaml"
)

// evolutionEvents are the events an Evolution API v2 engine sends only
// when its WEBHOOK_EVENTS_<NAME> variable is "true" (each defaults to
// false).
var evolutionEvents = []string{
	"APPLICATION_STARTUP", "QRCODE_UPDATED", "MESSAGES_SET", "MESSAGES_UPSERT",
	"MESSAGES_EDITED", "MESSAGES_UPDATE", "MESSAGES_DELETE", "SEND_MESSAGE",
	"SEND_MESSAGE_UPDATE", "CONTACTS_SET", "CONTACTS_UPSERT", "CONTACTS_UPDATE",
	"PRESENCE_UPDATE", "CHATS_SET", "CHATS_UPSERT", "CHATS_UPDATE", "CHATS_DELETE",
	"GROUPS_UPSERT", "GROUPS_UPDATE", "GROUP_PARTICIPANTS_UPDATE",
	"CONNECTION_UPDATE", "LABELS_EDIT", "LABELS_ASSOCIATION", "CALL",
	"NEW_JWT_TOKEN", "TYPEBOT_START", "TYPEBOT_CHANGE_STATUS",
	"REMOVE_INSTANCE", "LOGOUT_INSTANCE",
}

// defaultShutdownGrace is EVORELAY_SHUTDOWN_GRACE's default.
const defaultShutdownGrace = 15 * time.Second

// closeMargin is what shutdown needs beyond the grace: closing the plugins
// and the spool.
const closeMargin = 10 * time.Second

// nonroot is the uid and gid of distroless's nonroot user.
const nonroot = 65532

func TestManifests(t *testing.T) {
	for _, tc := range []struct {
		file     string
		backend  string
		replicas int32
	}{
		{"kubernetes-sidecar.yaml", "embedded", 1},
		{"kubernetes-redis.yaml", "redis", 3},
	} {
		t.Run(tc.file, func(t *testing.T) {
			m := decodeManifest(t, tc.file)
			checkManifest(t, m, tc.backend, tc.replicas)
		})
	}
}

// manifest is one file's objects, in file order.
type manifest struct {
	objects []runtime.Object
}

// decodeManifest decodes every document of file strictly: an unknown or
// duplicated field is an error, as `kubectl apply --validate=strict` makes
// it.
func decodeManifest(t *testing.T, file string) manifest {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := appsv1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	decoder := serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var m manifest
	r := k8syaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(raw)))
	for i := 0; ; i++ {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: document %d: %v", file, i, err)
		}
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		obj, _, err := decoder.Decode(doc, nil, nil)
		if err != nil {
			t.Fatalf("%s: document %d: %v", file, i, err)
		}
		m.objects = append(m.objects, obj)
	}
	return m
}

func stripComments(doc []byte) []byte {
	var out []byte
	for _, line := range bytes.Split(doc, []byte("\n")) {
		if !bytes.HasPrefix(bytes.TrimSpace(line), []byte("#")) {
			out = append(out, line...)
			out = append(out, '\n')
		}
	}
	return out
}

func checkManifest(t *testing.T, m manifest, backend string, replicas int32) {
	var dep *appsv1.Deployment
	secrets := map[string]*corev1.Secret{} // defined so far
	claims := map[string]bool{}
	var services []*corev1.Service
	for _, obj := range m.objects {
		switch o := obj.(type) {
		case *corev1.Secret:
			secrets[o.Name] = o
		case *corev1.PersistentVolumeClaim:
			claims[o.Name] = true
		case *corev1.Service:
			services = append(services, o)
		case *appsv1.Deployment:
			if dep != nil {
				t.Fatalf("two Deployments: %s and %s", dep.Name, o.Name)
			}
			dep = o
			// Every Secret the pod reads is defined before it.
			checkSecretRefs(t, o.Spec.Template.Spec, secrets)
		default:
			t.Errorf("unexpected object %T", obj)
		}
	}
	if dep == nil {
		t.Fatal("no Deployment")
	}
	pod := dep.Spec.Template.Spec
	if got := ptrValue(dep.Spec.Replicas, 1); got != replicas {
		t.Errorf("replicas = %d, want %d", got, replicas)
	}

	relay := findContainer(t, pod, "evorelay")
	engine := findContainer(t, pod, "engine")
	for _, c := range []*corev1.Container{relay, engine} {
		checkExpansionOrder(t, c)
	}
	env := envValues(relay)

	// The listen port is the container's "http" port, which the probes
	// and the Service use.
	_, portStr, err := net.SplitHostPort(env["EVORELAY_ADDR"])
	if err != nil {
		t.Fatalf("EVORELAY_ADDR %q: %v", env["EVORELAY_ADDR"], err)
	}
	httpPort := containerPort(t, relay, "http")
	if portStr != fmt.Sprint(httpPort) {
		t.Errorf("EVORELAY_ADDR %s, but the container's http port is %d", env["EVORELAY_ADDR"], httpPort)
	}
	checkProbe(t, "liveness", relay.LivenessProbe, "/healthz", relay)
	checkProbe(t, "readiness", relay.ReadinessProbe, "/readyz", relay)
	if relay.StartupProbe != nil {
		checkProbe(t, "startup", relay.StartupProbe, "/healthz", relay)
	}
	for _, s := range services {
		for _, p := range s.Spec.Ports {
			if p.TargetPort.Type == intstr.String && !hasPort(relay, p.TargetPort.StrVal) && !hasPort(engine, p.TargetPort.StrVal) {
				t.Errorf("Service %s targets port %q, which no container names", s.Name, p.TargetPort.StrVal)
			}
		}
	}

	// Shutdown: the pod's grace covers evorelay's and then some.
	grace := defaultShutdownGrace
	if v, ok := env["EVORELAY_SHUTDOWN_GRACE"]; ok {
		if grace, err = time.ParseDuration(v); err != nil {
			t.Fatalf("EVORELAY_SHUTDOWN_GRACE %q: %v", v, err)
		}
	}
	podGrace := time.Duration(ptrValue(pod.TerminationGracePeriodSeconds, 30)) * time.Second
	if podGrace < grace+closeMargin {
		t.Errorf("terminationGracePeriodSeconds %v, want at least EVORELAY_SHUTDOWN_GRACE (%v) + %v", podGrace, grace, closeMargin)
	}

	// The nonroot image can write its data directory.
	if pod.SecurityContext == nil || ptrValue(pod.SecurityContext.FSGroup, 0) != nonroot {
		t.Errorf("pod securityContext.fsGroup is not %d: the volume would not be writable by the image's user", nonroot)
	}
	dataDir := env["EVORELAY_DATA_DIR"]
	data := mountAt(t, relay, dataDir)
	vol := findVolume(t, pod, data.Name)
	if relay.SecurityContext != nil && ptrValue(relay.SecurityContext.ReadOnlyRootFilesystem, false) {
		mountAt(t, relay, "/tmp") // go-plugin's sockets
	}

	switch backend {
	case "embedded":
		if _, ok := env["EVORELAY_BACKEND"]; ok && env["EVORELAY_BACKEND"] != "embedded" {
			t.Errorf("EVORELAY_BACKEND = %q", env["EVORELAY_BACKEND"])
		}
		if vol.PersistentVolumeClaim == nil {
			t.Errorf("the spool's volume %q is not a PersistentVolumeClaim", vol.Name)
		} else if !claims[vol.PersistentVolumeClaim.ClaimName] {
			t.Errorf("claim %q is not defined in the file", vol.PersistentVolumeClaim.ClaimName)
		}
		if dep.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
			t.Errorf("strategy %q: two pods would open the one spool file at once; want Recreate", dep.Spec.Strategy.Type)
		}
	case "redis":
		if env["EVORELAY_BACKEND"] != "redis" {
			t.Errorf("EVORELAY_BACKEND = %q, want redis", env["EVORELAY_BACKEND"])
		}
		if _, ok := env["EVORELAY_REDIS_URL"]; !ok {
			t.Error("EVORELAY_REDIS_URL is not set")
		}
	}

	checkEngine(t, engine, relay, httpPort)
}

// checkEngine: the engine posts every event to the sidecar, with the key.
func checkEngine(t *testing.T, engine, relay *corev1.Container, httpPort int32) {
	env := envValues(engine)
	if env["WEBHOOK_GLOBAL_ENABLED"] != "true" {
		t.Errorf("engine: WEBHOOK_GLOBAL_ENABLED = %q, want true", env["WEBHOOK_GLOBAL_ENABLED"])
	}
	if env["WEBHOOK_GLOBAL_WEBHOOK_BY_EVENTS"] == "true" {
		t.Error("engine: WEBHOOK_GLOBAL_WEBHOOK_BY_EVENTS is true: the engine would append the event to the URL, after its ?apikey= query")
	}
	u, err := url.Parse(env["WEBHOOK_GLOBAL_URL"])
	if err != nil {
		t.Fatalf("engine: WEBHOOK_GLOBAL_URL: %v", err)
	}
	if u.Scheme != "http" || u.Hostname() != "127.0.0.1" || u.Port() != fmt.Sprint(httpPort) || u.Path != "/events" {
		t.Errorf("engine: WEBHOOK_GLOBAL_URL %s, want http://127.0.0.1:%d/events (the sidecar in the same pod)", u, httpPort)
	}
	if got := u.Query().Get("apikey"); got != "$(EVORELAY_API_KEY)" {
		t.Errorf("engine: WEBHOOK_GLOBAL_URL's apikey is %q, want $(EVORELAY_API_KEY)", got)
	}
	if a, b := secretRef(t, engine, "EVORELAY_API_KEY"), secretRef(t, relay, "EVORELAY_API_KEY"); a != b {
		t.Errorf("engine reads the key from %s, evorelay from %s", a, b)
	}
	for _, e := range evolutionEvents {
		if v := env["WEBHOOK_EVENTS_"+e]; v != "true" {
			t.Errorf("engine: WEBHOOK_EVENTS_%s = %q, want true: the engine would not send %s", e, v, e)
		}
	}
}

var varRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// checkExpansionOrder: Kubernetes expands $(VAR) in a value only when VAR
// is defined earlier in the same list; otherwise the literal text is used.
func checkExpansionOrder(t *testing.T, c *corev1.Container) {
	defined := map[string]bool{}
	for _, e := range c.Env {
		for _, m := range varRef.FindAllStringSubmatch(e.Value, -1) {
			if !defined[m[1]] {
				t.Errorf("%s: %s uses $(%s) before it is defined: Kubernetes would send the literal text", c.Name, e.Name, m[1])
			}
		}
		defined[e.Name] = true
	}
}

func checkSecretRefs(t *testing.T, pod corev1.PodSpec, secrets map[string]*corev1.Secret) {
	for _, c := range allContainers(pod) {
		for _, e := range c.Env {
			if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
				continue
			}
			ref := e.ValueFrom.SecretKeyRef
			s, ok := secrets[ref.Name]
			if !ok {
				t.Errorf("%s: %s reads Secret %q, not defined before the Deployment", c.Name, e.Name, ref.Name)
				continue
			}
			_, inString := s.StringData[ref.Key]
			_, inData := s.Data[ref.Key]
			if !inString && !inData && !ptrValue(ref.Optional, false) {
				t.Errorf("%s: %s reads key %q of Secret %q, which has no such key", c.Name, e.Name, ref.Key, ref.Name)
			}
		}
	}
}

func checkProbe(t *testing.T, kind string, p *corev1.Probe, path string, c *corev1.Container) {
	if p == nil || p.HTTPGet == nil {
		t.Errorf("%s: no %s probe over HTTP", c.Name, kind)
		return
	}
	if p.HTTPGet.Path != path {
		t.Errorf("%s: %s probe path %q, want %s", c.Name, kind, p.HTTPGet.Path, path)
	}
	port := p.HTTPGet.Port
	want := containerPort(t, c, "http")
	if (port.Type == intstr.String && port.StrVal != "http") || (port.Type == intstr.Int && port.IntVal != want) {
		t.Errorf("%s: %s probe port %s, want http (%d)", c.Name, kind, port.String(), want)
	}
}

func allContainers(pod corev1.PodSpec) []*corev1.Container {
	var out []*corev1.Container
	for i := range pod.InitContainers {
		out = append(out, &pod.InitContainers[i])
	}
	for i := range pod.Containers {
		out = append(out, &pod.Containers[i])
	}
	return out
}

// findContainer finds a container of the pod; an init container counts
// only as a native sidecar (restartPolicy Always), which runs beside the
// others.
func findContainer(t *testing.T, pod corev1.PodSpec, name string) *corev1.Container {
	t.Helper()
	for i, c := range pod.InitContainers {
		if c.Name == name {
			if c.RestartPolicy == nil || *c.RestartPolicy != corev1.ContainerRestartPolicyAlways {
				t.Fatalf("%s is an init container without restartPolicy: Always: it would have to exit before the engine starts", name)
			}
			return &pod.InitContainers[i]
		}
	}
	for i, c := range pod.Containers {
		if c.Name == name {
			return &pod.Containers[i]
		}
	}
	t.Fatalf("no container %q", name)
	return nil
}

func envValues(c *corev1.Container) map[string]string {
	m := map[string]string{}
	for _, e := range c.Env {
		m[e.Name] = e.Value
	}
	return m
}

func secretRef(t *testing.T, c *corev1.Container, name string) string {
	for _, e := range c.Env {
		if e.Name == name {
			if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
				t.Errorf("%s: %s is not read from a Secret", c.Name, name)
				return ""
			}
			return e.ValueFrom.SecretKeyRef.Name + "/" + e.ValueFrom.SecretKeyRef.Key
		}
	}
	t.Errorf("%s: %s is not set", c.Name, name)
	return ""
}

func hasPort(c *corev1.Container, name string) bool {
	for _, p := range c.Ports {
		if p.Name == name {
			return true
		}
	}
	return false
}

func containerPort(t *testing.T, c *corev1.Container, name string) int32 {
	t.Helper()
	for _, p := range c.Ports {
		if p.Name == name {
			return p.ContainerPort
		}
	}
	t.Fatalf("%s: no port named %q", c.Name, name)
	return 0
}

func mountAt(t *testing.T, c *corev1.Container, path string) corev1.VolumeMount {
	t.Helper()
	for _, m := range c.VolumeMounts {
		if m.MountPath == path {
			return m
		}
	}
	t.Fatalf("%s: nothing mounted at %q", c.Name, path)
	return corev1.VolumeMount{}
}

func findVolume(t *testing.T, pod corev1.PodSpec, name string) corev1.Volume {
	t.Helper()
	for _, v := range pod.Volumes {
		if v.Name == name {
			return v
		}
	}
	t.Fatalf("no volume %q", name)
	return corev1.Volume{}
}

func ptrValue[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}

// instruction is one Dockerfile instruction with its arguments.
type instruction struct {
	cmd  string
	args []string
	line int
}

// readDockerfile reads the instructions of a Dockerfile that uses no
// parser directives or heredocs (the one here).
func readDockerfile(t *testing.T, path string) []instruction {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []instruction
	var cont string
	for i, line := range strings.Split(string(raw), "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "#") || (line == "" && cont == "") {
			continue
		}
		if strings.HasSuffix(line, "\\") {
			cont += strings.TrimSuffix(line, "\\") + " "
			continue
		}
		line, cont = cont+line, ""
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		in := instruction{cmd: strings.ToUpper(f[0]), args: f[1:], line: i + 1}
		rest := strings.TrimSpace(line[len(f[0]):])
		if strings.HasPrefix(rest, "[") {
			if err := json.Unmarshal([]byte(rest), &in.args); err != nil {
				t.Fatalf("%s:%d: %v", path, i+1, err)
			}
		}
		out = append(out, in)
	}
	return out
}

// splitFlags returns the --flag=value options of a COPY and its paths.
func splitFlags(args []string) (map[string]string, []string) {
	flags := map[string]string{}
	for len(args) > 0 && strings.HasPrefix(args[0], "--") {
		k, v, _ := strings.Cut(strings.TrimPrefix(args[0], "--"), "=")
		flags[k] = v
		args = args[1:]
	}
	return flags, args
}

// TestDockerfile checks what can be checked without a Docker engine:
// every COPY from the build context names something that exists and is not
// ignored, the build writes what the final stage copies, and the
// entrypoint and settings point at it.
func TestDockerfile(t *testing.T) {
	root := ".."
	ignored := readDockerignore(t, filepath.Join(root, ".dockerignore"))
	for _, must := range []string{"data", "bin"} {
		if !isIgnored(ignored, must) {
			t.Errorf(".dockerignore does not exclude %s/", must)
		}
	}

	makefile, err := os.ReadFile(filepath.Join(root, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	// What `make build` produces, relative to the repository.
	bin := regexp.MustCompile(`(?m)^BIN\s*:=\s*(\S+)`).FindSubmatch(makefile)
	if bin == nil {
		t.Fatal("Makefile: no BIN := line")
	}
	for _, want := range []string{"-o $(BIN)/evorelay ./host", "-o $(BIN)/plugins/evorelay-sink-$$p", "$(LDFLAGS)"} {
		if !bytes.Contains(makefile, []byte(want)) {
			t.Errorf("Makefile's build no longer has %q: update the Dockerfile and this test", want)
		}
	}
	built := map[string]bool{
		string(bin[1]) + "/evorelay": true,
		string(bin[1]) + "/plugins":  true,
	}

	var workdir, user, entrypoint string
	env := map[string]string{}
	copied := map[string]string{} // destination in the final image → source in the build stage
	stage := 0
	for _, in := range readDockerfile(t, "Dockerfile") {
		switch in.cmd {
		case "FROM":
			stage++
		case "WORKDIR":
			workdir = in.args[0]
		case "USER":
			user = in.args[0]
		case "ENTRYPOINT":
			entrypoint = in.args[0]
		case "ENV":
			for _, kv := range in.args {
				k, v, _ := strings.Cut(kv, "=")
				env[k] = v
			}
		case "COPY":
			flags, paths := splitFlags(in.args)
			srcs, dst := paths[:len(paths)-1], paths[len(paths)-1]
			if _, ok := flags["from"]; ok {
				for _, s := range srcs {
					copied[dst] = s
				}
				continue
			}
			for _, s := range srcs {
				if s == "." {
					continue
				}
				if _, err := os.Stat(filepath.Join(root, s)); err != nil {
					t.Errorf("Dockerfile:%d: COPY %s: not in the repository", in.line, s)
				}
				if isIgnored(ignored, s) {
					t.Errorf("Dockerfile:%d: COPY %s: excluded by .dockerignore", in.line, s)
				}
			}
		}
	}
	if stage != 2 {
		t.Errorf("%d stages, want a build stage and the final image", stage)
	}
	if user != fmt.Sprintf("%d:%d", nonroot, nonroot) {
		t.Errorf("USER %q, want %d:%d (the manifests' fsGroup)", user, nonroot, nonroot)
	}
	fromBuild := func(dst string) string {
		src, ok := copied[dst]
		if !ok {
			t.Errorf("the final image gets nothing at %s", dst)
			return ""
		}
		rel, err := filepath.Rel(workdir, src)
		if err != nil || !built[rel] {
			t.Errorf("%s is copied from %s, which `make build` does not produce (it writes %v under %s)", dst, src, built, workdir)
		}
		return rel
	}
	if rel := fromBuild(entrypoint); rel != string(bin[1])+"/evorelay" {
		t.Errorf("ENTRYPOINT %s is %s, not the host", entrypoint, rel)
	}
	if rel := fromBuild(env["EVORELAY_PLUGIN_DIR"]); rel != string(bin[1])+"/plugins" {
		t.Errorf("EVORELAY_PLUGIN_DIR %s is %s, not the plugins", env["EVORELAY_PLUGIN_DIR"], rel)
	}
	if _, ok := copied[env["EVORELAY_DATA_DIR"]]; !ok {
		t.Errorf("EVORELAY_DATA_DIR %s is not created in the image: the nonroot user could not create it", env["EVORELAY_DATA_DIR"])
	}
}

func readDockerignore(t *testing.T, path string) []string {
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(raw), "\n") {
		l = strings.TrimSpace(l)
		if l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, strings.TrimSuffix(strings.TrimPrefix(l, "/"), "/"))
		}
	}
	return out
}

// isIgnored reports whether path, relative to the context, is excluded by
// one of patterns (a path or a glob, matching it or a parent directory).
func isIgnored(patterns []string, path string) bool {
	path = filepath.Clean(path)
	for _, p := range patterns {
		for q := path; q != "." && q != "/"; q = filepath.Dir(q) {
			if ok, _ := filepath.Match(p, q); ok {
				return true
			}
		}
	}
	return false
}
