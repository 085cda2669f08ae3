package policy

import (
	"fmt"
	"sync/atomic"
)

// Holder holds the current policy for concurrent readers and swaps it
// atomically. Readers call Load once per request and use that *Policy
// throughout, so a request never sees half of one policy and half of another.
// The zero value holds no policy.
type Holder struct {
	p atomic.Pointer[Policy]
}

// NewHolder returns a Holder holding p.
func NewHolder(p *Policy) *Holder {
	h := &Holder{}
	h.p.Store(p)
	return h
}

// Load returns the current policy, or nil if none was ever stored.
func (h *Holder) Load() *Policy { return h.p.Load() }

// Swap installs p and returns the previous policy.
func (h *Holder) Swap(p *Policy) *Policy { return h.p.Swap(p) }

// Reload parses the file at path and installs it. If the file cannot be read,
// does not parse, or does not validate and compile, the current policy stays in
// place and the error (wrapping ErrInvalid for a bad file) is returned; the
// caller records either outcome. It returns the old and new policies on
// success (they are equal in Version when the file did not change).
func (h *Holder) Reload(path string) (old, cur *Policy, err error) {
	p, err := LoadFile(path)
	if err != nil {
		return h.Load(), h.Load(), fmt.Errorf("policy reload refused, keeping version %s: %w", versionOf(h.Load()), err)
	}
	return h.Swap(p), p, nil
}

func versionOf(p *Policy) string {
	if p == nil {
		return "(none)"
	}
	return p.Version()
}
