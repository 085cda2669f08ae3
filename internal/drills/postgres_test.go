package drills

import (
	"cmp"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// privatePostgres is a PostgreSQL instance only this test uses, so that it
// can be stopped and started without disturbing anyone else.
type privatePostgres struct {
	t       *testing.T
	bin     string // directory of initdb and postgres
	dir     string // root of the temp tree (data and socket dirs)
	data    string
	port    int
	asUser  []string // "runuser -u postgres --" when running as root
	cmd     *exec.Cmd
	exited  chan error
	logPath string
	listen  string // listen_addresses (127.0.0.1 unless listenAlso added one)
}

// newPrivatePostgres runs initdb into a temp dir and starts the server on a
// free loopback port. Without PostgreSQL binaries the test is skipped, or
// fails under CI=true.
func newPrivatePostgres(t *testing.T) *privatePostgres {
	t.Helper()
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(matches) == 0 {
		requireComponent(t, "PostgreSQL server binaries (initdb)", fmt.Errorf("no /usr/lib/postgresql/*/bin/initdb"))
	}
	p := &privatePostgres{t: t, bin: filepath.Dir(matches[len(matches)-1])}
	dir, err := os.MkdirTemp("", "wca-drill-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	p.dir, p.data, p.logPath = dir, filepath.Join(dir, "data"), filepath.Join(dir, "postgres.log")
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		// PostgreSQL refuses to run as root.
		u, err := user.Lookup("postgres")
		if err != nil {
			requireComponent(t, "a postgres system user (running as root)", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
		p.asUser = []string{"runuser", "-u", "postgres", "--"}
	}
	out, err := p.command(filepath.Join(p.bin, "initdb"), "-D", p.data, "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8").CombinedOutput()
	if err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.port = ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	p.start()
	t.Cleanup(p.stop)
	return p
}

func (p *privatePostgres) command(name string, args ...string) *exec.Cmd {
	all := append(append([]string{}, p.asUser...), append([]string{name}, args...)...)
	return exec.Command(all[0], all[1:]...)
}

// url is the connection URL of database name.
func (p *privatePostgres) url(name string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable&connect_timeout=2", p.port, name)
}

// start runs the server and waits until it accepts connections.
func (p *privatePostgres) start() {
	p.t.Helper()
	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o666)
	if err != nil {
		p.t.Fatal(err)
	}
	p.cmd = p.command(filepath.Join(p.bin, "postgres"), "-D", p.data, "-p", strconv.Itoa(p.port), "-k", p.dir,
		"-c", "listen_addresses="+cmp.Or(p.listen, "127.0.0.1"), "-c", "fsync=off", "-c", "max_connections=100")
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	p.exited = make(chan error, 1)
	go func() { p.exited <- p.cmd.Wait(); logf.Close() }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		c, err := pgx.Connect(ctx, p.url("postgres"))
		cancel()
		if err == nil {
			c.Close(context.Background())
			return
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(p.logPath)
			p.t.Fatalf("private postgres did not start: %v\n%s", err, log)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stop shuts the server down (pg_ctl fast shutdown: connections are closed)
// and waits for it to exit. It is a no-op if it is not running.
func (p *privatePostgres) stop() {
	if p.cmd == nil || p.cmd.ProcessState != nil {
		return
	}
	if out, err := p.command(filepath.Join(p.bin, "pg_ctl"), "stop", "-D", p.data, "-m", "fast", "-w", "-t", "30").CombinedOutput(); err != nil {
		p.t.Logf("pg_ctl stop: %v: %s", err, out)
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	}
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.exited
	}
}

// listenAlso restarts the server listening on addr too, trusting clients
// from cidr (the partition drill's network namespace).
func (p *privatePostgres) listenAlso(addr, cidr string) {
	p.t.Helper()
	hba := filepath.Join(p.data, "pg_hba.conf")
	f, err := os.OpenFile(hba, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		p.t.Fatal(err)
	}
	_, err = fmt.Fprintf(f, "host all all %s trust\n", cidr)
	f.Close()
	if err != nil {
		p.t.Fatal(err)
	}
	p.stop()
	p.listen = "127.0.0.1," + addr
	p.start()
}

// createDB creates a database and returns its URL.
func (p *privatePostgres) createDB(name string) string {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, p.url("postgres"))
	if err != nil {
		p.t.Fatal(err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		p.t.Fatal(err)
	}
	return p.url(name)
}

// requireComponent skips loudly, or fails under CI=true.
func requireComponent(t *testing.T, what string, err error) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("drills: %s is required in CI but unavailable: %v", what, err)
	}
	t.Skipf("SKIPPING: %s not available (%v); set CI=true to make this a failure", what, err)
}
