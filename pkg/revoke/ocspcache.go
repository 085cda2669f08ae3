package revoke

import (
	"context"
	"sync"
	"time"
)

// Defaults of the responder's in-process cache of stored OCSP responses.
const (
	// DefaultOCSPCache is how many pre-signed responses a Responder keeps in
	// memory (about 0.5 KB each).
	DefaultOCSPCache = 20000
	// DefaultOCSPCacheRecheck is how often a Responder re-reads an issuer's
	// revocation counter to notice revocations committed by other replicas.
	DefaultOCSPCacheRecheck = time.Second
)

// ocspCache holds the DER responses of the store (keyed by issuer and
// serial) so that the OCSP hot path is a map lookup, not a database read.
//
// Why it never contradicts a committed revocation:
//
//   - In this process, Revoker.Revoke calls invalidate (through the
//     Publisher the Responder follows) right after the revocation commits and
//     before Revoke returns: the entry is gone before the caller hears back.
//
//   - Revocations committed by other replicas are noticed by re-reading the
//     issuer's revocation counter (store.RevocationSeq, one indexed count)
//     at most every recheck: an entry is only served while its issuer's
//     counter was confirmed unchanged within recheck; when the check is due
//     the request that notices it reads the counter (others wait for it), and
//     a changed counter drops the issuer's entries. So another replica's
//     revocation shows here at most recheck (default 1s) after it commits,
//     which is the bounded staleness RFC 5019 section 6 expects of any OCSP
//     cache (and far below the responses' own validity, which HTTP caches and
//     clients already honour).
//
//   - A fill races neither: it records the issuer's generation before the
//     store read and is dropped if an invalidation happened meanwhile.
//
//   - A stored response is only cached if the certificate's committed status
//     (read after it) agrees with it: the window between another replica's
//     revocation commit and its storing the revoked response is never frozen
//     into the cache.
//
// The cache is bounded by size (an arbitrary entry is evicted when full) and
// entries go once the publisher is due to re-sign them (OCSPMargin before
// nextUpdate), so a refreshed response is picked up from the store.
type ocspCache struct {
	size    int
	recheck time.Duration

	mu      sync.Mutex
	entries map[cacheKey]Response
	issuers map[string]*issuerSeq
}

type cacheKey struct{ issuerID, serial string }

// issuerSeq is what the cache knows about one issuer's revocations.
type issuerSeq struct {
	seq        int64
	verifiedAt time.Time
	gen        uint64        // bumped by every invalidation of this issuer
	checking   chan struct{} // closed when the running check ends; nil if none
}

func newOCSPCache(size int, recheck time.Duration) *ocspCache {
	return &ocspCache{size: size, recheck: recheck, entries: map[cacheKey]Response{}, issuers: map[string]*issuerSeq{}}
}

func (c *ocspCache) issuerLocked(id string) *issuerSeq {
	is := c.issuers[id]
	if is == nil {
		is = &issuerSeq{seq: -1}
		c.issuers[id] = is
	}
	return is
}

// confirm makes sure the issuer's revocation counter was read within
// recheck, reading it (once, for all waiting callers) when due. It returns
// the issuer's generation as of the confirmation; ok is false if the counter
// could not be read, and then nothing of this issuer may be served from the
// cache.
func (c *ocspCache) confirm(ctx context.Context, id string, now time.Time, readSeq func(context.Context, string) (int64, error)) (gen uint64, ok bool) {
	for {
		c.mu.Lock()
		is := c.issuerLocked(id)
		if is.seq >= 0 && now.Sub(is.verifiedAt) < c.recheck && !now.Before(is.verifiedAt) {
			gen := is.gen
			c.mu.Unlock()
			return gen, true
		}
		if wait := is.checking; wait != nil {
			c.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return 0, false
			}
		}
		done := make(chan struct{})
		is.checking = done
		c.mu.Unlock()

		seq, err := readSeq(ctx, id)

		c.mu.Lock()
		is.checking = nil
		close(done)
		if err != nil {
			c.mu.Unlock()
			return 0, false
		}
		if seq != is.seq {
			if is.seq >= 0 {
				c.dropIssuerLocked(id, is)
			}
			is.seq = seq
		}
		is.verifiedAt = now
		gen := is.gen
		c.mu.Unlock()
		return gen, true
	}
}

// get returns the cached response for serial if it is still to be served.
func (c *ocspCache) get(id, serial string, now time.Time, margin time.Duration) (Response, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.entries[cacheKey{id, serial}]
	if !ok {
		return Response{}, false
	}
	if !fresh(r, now, margin) {
		delete(c.entries, cacheKey{id, serial})
		return Response{}, false
	}
	return r, true
}

// put caches r unless the issuer was invalidated since gen was read.
func (c *ocspCache) put(id, serial string, r Response, gen uint64, now time.Time, margin time.Duration) {
	if !fresh(r, now, margin) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.issuerLocked(id).gen != gen {
		return
	}
	k := cacheKey{id, serial}
	if _, exists := c.entries[k]; !exists && len(c.entries) >= c.size {
		for victim := range c.entries { // map order is random: an arbitrary entry
			delete(c.entries, victim)
			break
		}
	}
	c.entries[k] = r
}

// invalidate drops serial's entry at once (a revocation committed in this
// process) and makes fills that started before it void.
func (c *ocspCache) invalidate(id, serial string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.issuerLocked(id).gen++
	delete(c.entries, cacheKey{id, serial})
}

// expire makes the next confirm of the issuer read its counter.
func (c *ocspCache) expire(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.issuerLocked(id).verifiedAt = time.Time{}
}

func (c *ocspCache) dropIssuerLocked(id string, is *issuerSeq) {
	is.gen++
	for k := range c.entries {
		if k.issuerID == id {
			delete(c.entries, k)
		}
	}
}

func (c *ocspCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

// fresh: a response is served from memory until margin (Config.OCSPMargin)
// before its nextUpdate, when the publisher re-signs it.
func fresh(r Response, now time.Time, margin time.Duration) bool {
	return now.Before(r.NextUpdate.Add(-margin))
}
