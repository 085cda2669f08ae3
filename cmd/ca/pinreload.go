package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

// loginReloader is a key store that stops logging in after the token refused
// its PIN until told to try again; *hsm.PKCS11Store fits.
type loginReloader interface {
	ReloadLogin() bool
}

// watchLoginReload makes SIGHUP the explicit reload after a refused PIN: the
// key store then makes exactly one new login attempt on its next use (the
// PIN is the one configured at start; fix the token's PIN, or restart with
// the new one). It returns at once for key stores that never refuse a PIN;
// the watch runs in bg.
func watchLoginReload(bg *background, keys any, log *slog.Logger) {
	r, ok := keys.(loginReloader)
	if !ok {
		return
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	bg.Go(func(ctx context.Context) {
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				if r.ReloadLogin() {
					log.Info("SIGHUP: the HSM login refusal is cleared; the next key store use logs in once")
				}
			}
		}
	})
}
