package workloadapi

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// PeerCred is a caller's unix peer credentials (SO_PEERCRED), read when its
// connection is accepted.
type PeerCred struct {
	PID      int32
	UID, GID uint32
}

// peerAuthInfo carries PeerCred into the call's peer.Peer.
type peerAuthInfo struct {
	credentials.CommonAuthInfo
	cred PeerCred
}

func (peerAuthInfo) AuthType() string { return "unix-peercred" }

// peerCredentials is a gRPC transport "security" that adds nothing to the
// connection (the socket's file mode is the protection, as in SPIRE's agent)
// but records the caller's SO_PEERCRED for the allow-lists.
type peerCredentials struct{}

func (peerCredentials) ClientHandshake(context.Context, string, net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("workloadapi: server-side credentials only")
}

func (peerCredentials) ServerHandshake(c net.Conn) (net.Conn, credentials.AuthInfo, error) {
	info := peerAuthInfo{CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.NoSecurity}, cred: PeerCred{PID: -1, UID: ^uint32(0), GID: ^uint32(0)}}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return c, info, nil
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return nil, nil, err
	}
	var ucred *unix.Ucred
	var serr error
	if err := raw.Control(func(fd uintptr) {
		ucred, serr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return nil, nil, err
	}
	if serr != nil {
		return nil, nil, fmt.Errorf("workloadapi: SO_PEERCRED: %w", serr)
	}
	info.cred = PeerCred{PID: ucred.Pid, UID: ucred.Uid, GID: ucred.Gid}
	return c, info, nil
}

func (peerCredentials) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "unix-peercred"}
}

func (p peerCredentials) Clone() credentials.TransportCredentials { return p }

func (peerCredentials) OverrideServerName(string) error { return nil }

// peerCredOf returns the caller's credentials recorded at accept.
func peerCredOf(ctx context.Context) (PeerCred, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return PeerCred{}, false
	}
	info, ok := p.AuthInfo.(peerAuthInfo)
	if !ok || info.cred.PID < 0 {
		return PeerCred{}, false
	}
	return info.cred, true
}

// Listen creates the unix socket at path, mode 0600, or 0660 owned by gid
// when gid >= 0. An existing socket is replaced only when nothing answers
// on it (a stale one left by a crash); a live one, or a path that is not a
// socket, is an error. The socket is created under a restrictive umask, so
// it is never reachable with wider permissions.
func Listen(path string, gid int) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("workloadapi: %s exists and is not a socket", path)
		}
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return nil, fmt.Errorf("workloadapi: %s is in use by a running agent", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("workloadapi: removing the stale socket: %w", err)
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	old := syscall.Umask(0o177)
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	syscall.Umask(old)
	if err != nil {
		return nil, err
	}
	l.SetUnlinkOnClose(true)
	mode := os.FileMode(0o600)
	if gid >= 0 {
		if err := os.Chown(path, -1, gid); err != nil {
			l.Close()
			return nil, fmt.Errorf("workloadapi: giving the socket to group %d: %w", gid, err)
		}
		mode = 0o660
	}
	if err := os.Chmod(path, mode); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}
