package testkit

import (
	"net"
	"sync"
	"testing"
)

// Partition is a TCP proxy in front of a real server that can stop
// forwarding without closing anything, like a network partition: connections
// stay open and silent, new ones are accepted (the handshake completes, as
// it would with the kernel's backlog) but nothing reaches the server or
// comes back, until Heal. Forwarding resumes on the same connections after
// Heal; those a client gave up on meanwhile are closed by their client.
type Partition struct {
	t      testing.TB
	target string
	ln     net.Listener

	mu    sync.Mutex
	cut   bool
	heal  chan struct{} // closed by Heal; replaced by Cut
	conns map[net.Conn]bool
	wg    sync.WaitGroup
}

// PartitionProxy listens on loopback and forwards to target (host:port). It
// is closed, with every connection, at cleanup.
func PartitionProxy(t testing.TB, target string) *Partition {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testkit: partition proxy: %v", err)
	}
	p := &Partition{t: t, target: target, ln: ln, heal: make(chan struct{}), conns: map[net.Conn]bool{}}
	close(p.heal)
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

// Addr is the proxy's host:port.
func (p *Partition) Addr() string { return p.ln.Addr().String() }

// Cut stops forwarding in both directions; nothing is closed.
func (p *Partition) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.cut {
		p.cut, p.heal = true, make(chan struct{})
	}
}

// Heal resumes forwarding.
func (p *Partition) Heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut {
		p.cut = false
		close(p.heal)
	}
}

// wait blocks while the partition is cut; false if the proxy closed.
func (p *Partition) wait(done <-chan struct{}) bool {
	p.mu.Lock()
	h := p.heal
	p.mu.Unlock()
	select {
	case <-h:
		return true
	case <-done:
		return false
	}
}

func (p *Partition) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go p.serve(c)
	}
}

// serve connects to the target only once the partition lets it through,
// then forwards both ways, holding every byte while cut.
func (p *Partition) serve(c net.Conn) {
	defer p.wg.Done()
	done := make(chan struct{})
	var once sync.Once
	stop := func() { once.Do(func() { close(done) }) }
	if !p.track(c) {
		return
	}
	defer c.Close()
	go func() { // a client that hangs up ends the connection even while cut
		<-done
		c.Close()
	}()
	if !p.wait(done) {
		stop()
		return
	}
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		stop()
		return
	}
	if !p.track(up) {
		up.Close()
		stop()
		return
	}
	defer up.Close()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.copy(up, c, done); stop() }()
	go func() { defer wg.Done(); p.copy(c, up, done); stop() }()
	<-done
	c.Close()
	up.Close()
	wg.Wait()
}

// copy forwards src to dst, holding data while the partition is cut.
func (p *Partition) copy(dst, src net.Conn, done chan struct{}) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !p.wait(done) {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *Partition) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conns == nil {
		c.Close()
		return false
	}
	p.conns[c] = true
	return true
}

// close stops the proxy: the listener and every connection.
func (p *Partition) close() {
	_ = p.ln.Close()
	p.mu.Lock()
	for c := range p.conns {
		_ = c.Close()
	}
	p.conns = nil
	if p.cut {
		p.cut = false
		close(p.heal)
	}
	p.mu.Unlock()
	p.wg.Wait()
}
