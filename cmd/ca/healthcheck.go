package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// cmdHealthcheck asks the public listener's /readyz and fails unless it
// answers 200: a container HEALTHCHECK for an image that carries no curl. The
// URL defaults to public_addr, asked on loopback when that is a wildcard
// address (0.0.0.0:8080 in a container).
func cmdHealthcheck(ctx context.Context, args []string, getenv env, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	cfgPath := commonFlags(fs)
	target := fs.String("url", "", "ask `URL` (default: http://<public_addr>/readyz, on loopback for a wildcard address)")
	timeout := fs.Duration("timeout", 5*time.Second, "give up after this long")
	if err := parseFlagsOnly(fs, args, stderr); err != nil {
		return err
	}
	if *timeout <= 0 {
		return fmt.Errorf("%w: --timeout must be positive", errUsage)
	}
	if *target == "" {
		cfg, err := loadConfig(*cfgPath, getenv)
		if err != nil {
			return err
		}
		*target = "http://" + loopbackIfWildcard(cfg.PublicAddr) + "/readyz"
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, *target, nil)
	if err != nil {
		return fmt.Errorf("%w: --url: %v", errUsage, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", *target, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answered %s: %s", *target, resp.Status, body)
	}
	fmt.Fprintf(stdout, "%s", body)
	return nil
}

// loopbackIfWildcard turns a wildcard listen address (":8080", "0.0.0.0:8080",
// "[::]:8080") into the loopback address of the same port; others stay.
func loopbackIfWildcard(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		if ip != nil && ip.To4() == nil {
			return net.JoinHostPort("::1", port)
		}
		return net.JoinHostPort("127.0.0.1", port)
	}
	return addr
}
