package caserve

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Options say how to start `ca serve`. Only Bin is required.
type Options struct {
	// Bin is the `ca` binary.
	Bin string
	// Vars is the child's configuration, added to this process's environment
	// without its CA_* variables (see Env). CA_API_ADDR and CA_PUBLIC_ADDR
	// are set from APIAddr and PublicAddr unless Vars names them.
	Vars map[string]string
	// DropEnv names further variables of this process's environment the
	// child does not inherit.
	DropEnv []string
	// APIAddr and PublicAddr are the listen addresses; empty: a free
	// loopback port each.
	APIAddr, PublicAddr string
	// Wrap is run with the binary and its arguments appended (say, `ip
	// netns exec NAME`), when not empty.
	Wrap []string
	// Dir is the child's working directory; empty: this process's.
	Dir string
	// Stderr receives the child's stderr (its log); nil: a buffer that
	// Process.Stderr returns. Stdout receives its stdout; nil: discarded.
	Stderr, Stdout io.Writer
	// ReadyPath is polled on the public listener until it answers 200:
	// "/readyz" if empty.
	ReadyPath string
	// ReadyWithin bounds the wait (60s if zero); Poll is the pause between
	// two polls (50ms if zero) and PollTimeout the client timeout of one
	// (5s if zero).
	ReadyWithin, Poll, PollTimeout time.Duration
}

// Process is a running `ca serve`.
type Process struct {
	Cmd *exec.Cmd
	// APIURL is https://APIAddr, PublicURL http://PublicAddr.
	APIURL, PublicURL string

	out    *LockedBuffer // nil when Options.Stderr was given
	done   chan struct{}
	exitMu sync.Mutex
	exit   error
}

// Start starts `ca serve` as o says and waits until it is ready. If it exits
// first or is not ready in time, it is killed and Start fails naming why,
// with its stderr when Start keeps it.
func Start(ctx context.Context, o Options) (*Process, error) {
	free, err := FreeAddrs(2)
	if err != nil {
		return nil, err
	}
	if o.APIAddr == "" {
		o.APIAddr = free[0]
	}
	if o.PublicAddr == "" {
		o.PublicAddr = free[1]
	}
	vars := map[string]string{"CA_API_ADDR": o.APIAddr, "CA_PUBLIC_ADDR": o.PublicAddr}
	for k, v := range o.Vars {
		vars[k] = v
	}
	p := &Process{APIURL: "https://" + vars["CA_API_ADDR"], PublicURL: "http://" + vars["CA_PUBLIC_ADDR"], done: make(chan struct{})}
	argv := append(append([]string{}, o.Wrap...), o.Bin, "serve")
	p.Cmd = exec.Command(argv[0], argv[1:]...)
	p.Cmd.Env = Env(vars, o.DropEnv...)
	p.Cmd.Dir = o.Dir
	p.Cmd.Stdout, p.Cmd.Stderr = o.Stdout, o.Stderr
	if o.Stderr == nil {
		p.out = &LockedBuffer{}
		p.Cmd.Stderr = p.out
	}
	if err := p.Cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting ca serve: %w", err)
	}
	go func() {
		err := p.Cmd.Wait()
		p.exitMu.Lock()
		p.exit = err
		p.exitMu.Unlock()
		close(p.done)
	}()
	if err := p.waitReady(ctx, o); err != nil {
		p.Kill()
		return nil, err
	}
	return p, nil
}

func (p *Process) waitReady(ctx context.Context, o Options) error {
	path, within, poll, timeout := o.ReadyPath, o.ReadyWithin, o.Poll, o.PollTimeout
	if path == "" {
		path = "/readyz"
	}
	if within == 0 {
		within = 60 * time.Second
	}
	if poll == 0 {
		poll = 50 * time.Millisecond
	}
	if timeout == 0 {
		timeout = 5 * time.Second
	}
	c := &http.Client{Timeout: timeout}
	deadline := time.Now().Add(within)
	for {
		select {
		case <-p.done:
			return fmt.Errorf("ca serve exited early (%v)%s", p.ExitErr(), p.outputSuffix())
		case <-ctx.Done():
			return fmt.Errorf("ca serve: waiting for %s: %w", path, ctx.Err())
		case <-time.After(poll):
		}
		if res, err := c.Get(p.PublicURL + path); err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("ca serve: %s did not answer 200 within %v%s", path, within, p.outputSuffix())
		}
	}
}

func (p *Process) outputSuffix() string {
	if p.out == nil {
		return ""
	}
	return ":\n" + p.out.String()
}

// Stderr is what the process wrote to stderr so far; empty when
// Options.Stderr took it.
func (p *Process) Stderr() string {
	if p.out == nil {
		return ""
	}
	return p.out.String()
}

// StderrBuffer is the buffer behind Stderr; nil when Options.Stderr took
// the output.
func (p *Process) StderrBuffer() *LockedBuffer { return p.out }

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// ExitErr is the process's exit error (nil for a clean exit); meaningful
// once Done is closed.
func (p *Process) ExitErr() error {
	p.exitMu.Lock()
	defer p.exitMu.Unlock()
	return p.exit
}

// Exited reports whether the process has exited.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Stop sends SIGTERM and waits up to within for the exit. It returns the
// exit error, or ErrStillRunning if the process did not exit in time (it is
// left running: Kill ends it).
func (p *Process) Stop(within time.Duration) error {
	if err := p.Cmd.Process.Signal(syscall.SIGTERM); err != nil && !p.Exited() {
		return fmt.Errorf("ca serve: SIGTERM: %w", err)
	}
	select {
	case <-p.done:
		return p.ExitErr()
	case <-time.After(within):
		return ErrStillRunning
	}
}

// ErrStillRunning is Stop's error when the process outlives the wait.
var ErrStillRunning = errors.New("ca serve did not exit in time")

// Kill sends SIGKILL, unless the process has exited, and waits for the exit.
func (p *Process) Kill() {
	if !p.Exited() {
		_ = p.Cmd.Process.Kill()
	}
	<-p.done
}

// Bundle reads the public /bundle.pem and returns it with a pool of its
// certificates.
func (p *Process) Bundle(ctx context.Context) ([]byte, *x509.CertPool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.PublicURL+"/bundle.pem", nil)
	if err != nil {
		return nil, nil, err
	}
	res, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("reading the bundle: %w", err)
	}
	defer res.Body.Close()
	bundle, err := io.ReadAll(res.Body)
	if err != nil {
		return nil, nil, fmt.Errorf("reading the bundle: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(bundle) {
		return nil, nil, fmt.Errorf("the served bundle holds no certificate (%d %q)", res.StatusCode, bundle)
	}
	return bundle, roots, nil
}

// FreeAddr returns a loopback address with a port that was free a moment ago.
func FreeAddr() (string, error) {
	addrs, err := FreeAddrs(1)
	if err != nil {
		return "", err
	}
	return addrs[0], nil
}

// FreeAddrs returns n loopback addresses with distinct ports that were free
// a moment ago. The listeners are all open before any is closed: two
// FreeAddr calls in a row can get the same port back from the kernel (seen
// in CI: `ca serve` refused "public_addr: must differ from api_addr").
func FreeAddrs(n int) ([]string, error) {
	addrs := make([]string, 0, n)
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer ln.Close()
		addrs = append(addrs, ln.Addr().String())
	}
	return addrs, nil
}

// Env is this process's environment without any CA_* variable nor the
// variables named in drop, plus vars, so a child `ca` sees only the
// configuration it is given.
func Env(vars map[string]string, drop ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "CA_") || slices.Contains(drop, name) {
			continue
		}
		env = append(env, kv)
	}
	for k, v := range vars {
		env = append(env, k+"="+v)
	}
	return env
}

// LockedBuffer collects a child process's output while it runs; safe for
// concurrent Write and String.
type LockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (l *LockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns everything written so far.
func (l *LockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
