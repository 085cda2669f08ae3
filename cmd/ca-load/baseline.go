package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"time"

	"github.com/workload-ca/workload-ca/internal/testkit/caserve"
)

// baselineSize is the fixed response the net/http baseline serves: about
// the size of a pre-signed OCSP answer with its responder certificate.
const baselineSize = 2048

// serveBaseline is the hidden `ca-load baseline-server ADDR` mode: a plain
// net/http server answering every request with the same 2 KB body, read the
// way the CA's handlers read (the request body is consumed).
func serveBaseline(addr string) error {
	body := bytes.Repeat([]byte("x"), baselineSize)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, 1<<16))
		w.Header().Set("Content-Type", "application/ocsp-response")
		_, _ = w.Write(body)
	})
	srv := &http.Server{Addr: addr, Handler: h, ReadHeaderTimeout: 10 * time.Second}
	return srv.ListenAndServe()
}

// baselineProc is the baseline server running as its own process, so that
// it competes for the CPUs the way `ca serve` does.
type baselineProc struct {
	cmd *exec.Cmd
	url string
}

func startBaseline(ctx context.Context) (*baselineProc, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	addr, err := caserve.FreeAddr()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, "baseline-server", addr)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	b := &baselineProc{cmd: cmd, url: "http://" + addr}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return b, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.stop()
	return nil, fmt.Errorf("baseline server did not listen on %s", addr)
}

func (b *baselineProc) pid() int { return b.cmd.Process.Pid }

func (b *baselineProc) stop() {
	_ = b.cmd.Process.Kill()
	_ = b.cmd.Wait()
}
