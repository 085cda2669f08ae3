//go:build cgo

package hsm

import (
	"bytes"
	"context"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThalesGroup/crypto11"

	"github.com/workload-ca/workload-ca/internal/clock"
)

// Option adjusts OpenPKCS11.
type Option func(*PKCS11Store)

// WithClock sets the clock the reconnect backoff reads (default clock.Real).
func WithClock(c clock.Clock) Option {
	return func(s *PKCS11Store) { s.clk = c }
}

// PKCS11Store is a KeyStore backed by one PKCS#11 token through crypto11.
// Keys are generated on the token (sensitive, non-extractable, persistent) and
// found by RFC 7512 URI. When the token or module fails, signing returns
// ErrUnavailable at once and the store rebuilds its crypto11 context on a
// later call (bounded by ReconnectTimeout, no more often than the backoff
// allows); signers handed out earlier re-find their key and keep working.
//
// Recovering from a token reset needs the module to be re-initialised, which
// crypto11 does when the last context on the module closes; use one
// PKCS11Store per module per process.
type PKCS11Store struct {
	cfg PKCS11Config
	log *slog.Logger
	clk clock.Clock

	genMu sync.Mutex // serialises Generate, so one name cannot be created twice

	mu          sync.Mutex // guards the fields below; never held across a PKCS#11 call
	conn        *p11Conn   // current context, nil while the token is unavailable
	gen         uint64     // generation of the newest context
	closed      bool
	retiring    []*p11Conn // broken contexts not yet closed
	attempt     *reconnectAttempt
	failures    int
	nextAttempt time.Time
	lastErr     error
	signers     map[string]*p11Signer // by hex CKA_ID
	// workers run every call on the token: at most cfg.Workers at once,
	// hung ones included (workers.go).
	workers *Workers

	// signatures counts the signatures asked of the token. Only tests read
	// it (Ping must not sign), but it stays here: the store's own calls on
	// the token are seen nowhere else, and a count costs one atomic add.
	signatures atomic.Uint64
	// pinRefused is the token's refusal of the PIN, while it holds: no
	// login is attempted until ReloadLogin clears it.
	pinRefused error
	// logins counts login attempts (crypto11.Configure calls C_Login once).
	logins int
}

var _ KeyStore = (*PKCS11Store)(nil)

// OpenPKCS11 connects to the token and logs in. It fails with an error
// wrapping ErrUnavailable when the module or token cannot be reached within
// ReconnectTimeout, or wrapping ErrPINRefused when the token refuses the PIN.
func OpenPKCS11(cfg PKCS11Config, log *slog.Logger, opts ...Option) (*PKCS11Store, error) {
	if cfg.Module == "" || cfg.TokenLabel == "" || cfg.PIN == "" {
		return nil, errors.New("hsm: PKCS#11 module, token label and PIN are required")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &PKCS11Store{
		cfg:     cfg.withDefaults(),
		log:     log.With("component", "hsm", "token", cfg.TokenLabel),
		clk:     clock.Real{},
		signers: map[string]*p11Signer{},
	}
	s.workers = NewWorkers(s.cfg.Workers, s.log)
	for _, o := range opts {
		o(s)
	}
	if _, err := s.connection(context.Background()); err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("hsm: open PKCS#11 token %q: %w", cfg.TokenLabel, err)
	}
	s.log.Info("PKCS#11 token opened", "module", cfg.Module)
	return s, nil
}

// Generate creates a key pair on the token, labelled name with a fresh random
// CKA_ID. The private half is CKA_TOKEN, CKA_PRIVATE, CKA_SENSITIVE and not
// CKA_EXTRACTABLE, and may only sign (no decrypt, unwrap or derive); its
// attributes are read back and a weaker key is destroyed (*WeakKeyError). It
// returns the key under pkcs11:token=<label>;object=<name>, ErrKeyExists if a
// key pair with that label is on the token, or ErrUnsupported if the token
// refuses the key type or template. If ctx ends while the token is
// generating, the key may still appear on the token.
func (s *PKCS11Store) Generate(ctx context.Context, name string, kt KeyType) (Key, error) {
	if err := validateName(name); err != nil {
		return Key{}, err
	}
	if !kt.Valid() {
		return Key{}, fmt.Errorf("%w: %q", ErrBadKeyType, kt)
	}
	s.genMu.Lock()
	defer s.genMu.Unlock()
	c, err := s.connection(ctx)
	if err != nil {
		return Key{}, err
	}
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return Key{}, fmt.Errorf("hsm: key id: %w", err)
	}
	var signer crypto11.Signer
	err = s.do(ctx, c, 0, func(cx *crypto11.Context) error {
		existing, err := cx.FindKeyPairs(nil, []byte(name))
		if err != nil {
			return err
		}
		if len(existing) > 0 {
			return ErrKeyExists
		}
		if signer, err = generateClassified(cx, id, name, kt); err != nil {
			return err
		}
		// The token may have ignored part of the template: read the
		// private half back and refuse a key weaker than asked.
		if werr := checkGenerated(cx, signer, name); werr != nil {
			if derr := signer.Delete(); derr != nil {
				return fmt.Errorf("%w (and destroying it failed: %v)", werr, derr)
			}
			return werr
		}
		return nil
	})
	if errors.Is(err, ErrKeyExists) {
		return Key{}, fmt.Errorf("hsm: generate %q: %w", name, ErrKeyExists)
	}
	if err != nil {
		return Key{}, fmt.Errorf("hsm: generate %q (%s): %w", name, kt, err)
	}
	k := s.remember(c, signer, name, id)
	uri := pkcs11URI{Token: s.cfg.TokenLabel, HasToken: true, Object: name, HasObject: true}.String()
	s.log.Info("key generated on token", "key", name, "type", string(kt), "uri", uri)
	return Key{URI: uri, Signer: k}, nil
}

// keyTemplates builds the attributes of a CA key pair: both halves
// persistent, labelled and identified; the private half private, sensitive,
// non-extractable and sign-only (no decrypt, unwrap or derive).
//
// The public half gets CKA_VERIFY false and nothing else about its use:
// the CA verifies its own signatures in Go, never on the token, and a
// public key's capabilities protect nothing. Anything more is not accepted
// everywhere: tpm2-pkcs11 (1.9) derives both halves' attributes from one TPM
// object, reports a sign-only key's public half as CKA_VERIFY false and
// CKA_ENCRYPT true, and refuses any template that says otherwise ("User
// specified and TPM specified attr mismatch", CKR_GENERAL_ERROR); crypto11
// adds CKA_VERIFY true (and CKA_ENCRYPT true for RSA) unless the template
// sets them, so CKA_VERIFY is set false and CKA_ENCRYPT left to crypto11.
// checkGenerated reads the private half back: a token that ignored part of
// this template is caught there, not trusted.
func keyTemplates(id []byte, label string) (pub, priv crypto11.AttributeSet, err error) {
	pub, err = crypto11.NewAttributeSetWithIDAndLabel(id, []byte(label))
	if err != nil {
		return nil, nil, err
	}
	priv = pub.Copy()
	set := func(a crypto11.AttributeSet, t crypto11.AttributeType, v bool) {
		if err == nil {
			err = a.Set(t, v)
		}
	}
	set(pub, crypto11.CkaToken, true)
	set(pub, crypto11.CkaPrivate, false)
	set(pub, crypto11.CkaVerify, false)
	for _, r := range privateKeyRules {
		if r.inTemplate {
			set(priv, r.t, r.want)
		}
	}
	if h := templateHook.Load(); h != nil && err == nil {
		(*h)(priv)
	}
	return pub, priv, err
}

// templateHook lets tests change the private key template (a token that
// ignores part of it is simulated so); nil in production. It stays a seam:
// SoftHSM honours the template, so no real module the tests have can play a
// token that does not, and the check of the generated key's attributes that
// such a token must fail is this package's.
var templateHook atomic.Pointer[func(priv crypto11.AttributeSet)]

// attrRule is one attribute a CA private key must have after generation.
type attrRule struct {
	t    crypto11.AttributeType
	name string
	want bool
	// absentOK: a token may not report the attribute at all (it has no such
	// capability for this key type); that is as good as false.
	absentOK bool
	// inTemplate: the template asks for it; the others (CKA_LOCAL,
	// CKA_ALWAYS_SENSITIVE, CKA_NEVER_EXTRACTABLE) are the token's to set.
	inTemplate bool
}

// privateKeyRules are the private half's attributes checked after
// generation, in this order (the first mismatch is reported).
var privateKeyRules = []attrRule{
	{crypto11.CkaToken, "CKA_TOKEN", true, false, true},
	{crypto11.CkaPrivate, "CKA_PRIVATE", true, false, true},
	{crypto11.CkaSensitive, "CKA_SENSITIVE", true, false, true},
	{crypto11.CkaExtractable, "CKA_EXTRACTABLE", false, true, true},
	{crypto11.CkaAlwaysSensitive, "CKA_ALWAYS_SENSITIVE", true, false, false},
	{crypto11.CkaNeverExtractable, "CKA_NEVER_EXTRACTABLE", true, false, false},
	{crypto11.CkaSign, "CKA_SIGN", true, false, true},
	{crypto11.CkaDecrypt, "CKA_DECRYPT", false, true, true},
	{crypto11.CkaUnwrap, "CKA_UNWRAP", false, true, true},
	{crypto11.CkaDerive, "CKA_DERIVE", false, true, true},
}

// generateClassified generates the key pair and sorts an ambiguous failure
// (CKR_GENERAL_ERROR, CKR_FUNCTION_FAILED) into outage or refusal by asking
// the token something that involves no template: if it cannot answer, the
// original error goes back (a lost connection: the store reconnects); if it
// answers, the generation is tried once more (SoftHSM fails so now and then
// under load), and a second failure while the token still answers is a
// refusal (ErrUnsupported), not an outage.
func generateClassified(cx *crypto11.Context, id []byte, name string, kt KeyType) (crypto11.Signer, error) {
	gen := func() (crypto11.Signer, error) {
		pub, priv, err := keyTemplates(id, name)
		if err != nil {
			return nil, err
		}
		switch kt {
		case ECDSAP256:
			return cx.GenerateECDSAKeyPairWithAttributes(pub, priv, elliptic.P256())
		case ECDSAP384:
			return cx.GenerateECDSAKeyPairWithAttributes(pub, priv, elliptic.P384())
		case RSA3072:
			return cx.GenerateRSAKeyPairWithAttributes(pub, priv, 3072)
		}
		return nil, fmt.Errorf("%w: %q", ErrBadKeyType, kt)
	}
	var first error
	for attempt := 0; attempt < 2; attempt++ {
		signer, err := gen()
		if err == nil || !isAmbiguousFailure(err) {
			return signer, err
		}
		if first == nil {
			first = err
		}
		left, perr := cx.FindKeyPairs(nil, []byte(name))
		if perr != nil || len(left) > 0 {
			// The token does not answer a search (an outage), or the
			// failed call left a key behind (do not make a second one).
			return nil, err
		}
	}
	return nil, fmt.Errorf("%w: the token refused to generate a %s key (%v, twice) while it answers other calls: "+
		"the key type or the key template is not supported; run `ca hsm check`", ErrUnsupported, kt, first)
}

// attrState is a boolean attribute read from the token, or its absence.
type attrState int

const (
	attrAbsent attrState = iota
	attrFalse
	attrTrue
)

func (a attrState) String() string {
	return [...]string{"absent", "false", "true"}[a]
}

// readBool reads one boolean attribute of key's private half (pub: its
// public half). Attributes are read one at a time: a token that does not
// know one (CKR_ATTRIBUTE_TYPE_INVALID) would fail a combined read.
func readBool(cx *crypto11.Context, key crypto11.Signer, t crypto11.AttributeType, pub bool) (attrState, error) {
	var (
		a   *crypto11.Attribute
		err error
	)
	if pub {
		a, err = cx.GetPubAttribute(key, t)
	} else {
		a, err = cx.GetAttribute(key, t)
	}
	if err != nil {
		if isAttributeUnavailable(err) {
			return attrAbsent, nil
		}
		return attrAbsent, err
	}
	if a == nil || len(a.Value) != 1 {
		return attrAbsent, nil
	}
	if a.Value[0] != 0 {
		return attrTrue, nil
	}
	return attrFalse, nil
}

// checkGenerated reads the private half of a new key back and returns a
// *WeakKeyError naming the first attribute that is weaker than
// privateKeyRules ask.
func checkGenerated(cx *crypto11.Context, key crypto11.Signer, name string) error {
	for _, r := range privateKeyRules {
		got, err := readBool(cx, key, r.t, false)
		if err != nil {
			return err
		}
		want := attrFalse
		if r.want {
			want = attrTrue
		}
		if got == want || (got == attrAbsent && r.absentOK) {
			continue
		}
		return &WeakKeyError{Key: name, Attribute: r.name, Got: got.String(), Want: want.String()}
	}
	return nil
}

// ownURI parses a pkcs11: URI naming a key on this store's token: ErrBadURI
// if it is malformed or names another token.
func (s *PKCS11Store) ownURI(uri string) (pkcs11URI, error) {
	u, err := parsePKCS11URI(uri)
	if err != nil {
		return u, err
	}
	if u.HasToken && u.Token != s.cfg.TokenLabel {
		return u, fmt.Errorf("%w: URI names token %q, this store holds %q", ErrBadURI, u.Token, s.cfg.TokenLabel)
	}
	return u, nil
}

// onePair finds the one key pair u names: ErrKeyNotFound if none, ErrBadURI
// if several match.
func onePair(cx *crypto11.Context, u pkcs11URI) (crypto11.Signer, error) {
	matches, err := findPairs(cx, u.ID, []byte(u.Object))
	if err != nil {
		return nil, err
	}
	switch len(matches) {
	case 0:
		return nil, ErrKeyNotFound
	case 1:
		return matches[0], nil
	default:
		return nil, fmt.Errorf("%w: %d key pairs match; add id= to the URI", ErrBadURI, len(matches))
	}
}

// Find returns the key a pkcs11: URI names, by object (CKA_LABEL), id
// (CKA_ID) or both. It fails with ErrBadURI if the URI is malformed, names
// another token, or matches more than one key pair, and with ErrKeyNotFound if
// nothing matches. Finding the same key twice returns the same Signer.
func (s *PKCS11Store) Find(ctx context.Context, uri string) (Key, error) {
	u, err := s.ownURI(uri)
	if err != nil {
		return Key{}, err
	}
	c, err := s.connection(ctx)
	if err != nil {
		return Key{}, err
	}
	var (
		found crypto11.Signer
		label string
		id    []byte
	)
	err = s.do(ctx, c, s.cfg.OpTimeout, func(cx *crypto11.Context) error {
		var err error
		if found, err = onePair(cx, u); err != nil {
			return err
		}
		attrs, err := cx.GetAttributes(found, []crypto11.AttributeType{crypto11.CkaId, crypto11.CkaLabel})
		if err != nil {
			return err
		}
		id, label = attrValue(attrs, crypto11.CkaId), string(attrValue(attrs, crypto11.CkaLabel))
		return nil
	})
	if err != nil {
		return Key{}, fmt.Errorf("hsm: find %s: %w", uri, err)
	}
	k := s.remember(c, found, label, id)
	canon := pkcs11URI{Token: s.cfg.TokenLabel, HasToken: true}
	if label != "" {
		canon.Object, canon.HasObject = label, true
	} else {
		canon.ID, canon.HasID = id, true
	}
	return Key{URI: canon.String(), Signer: k}, nil
}

// findPairs looks key pairs up by whichever of id and label is set.
func findPairs(cx *crypto11.Context, id, label []byte) ([]crypto11.Signer, error) {
	if len(id) == 0 && len(label) == 0 {
		return nil, fmt.Errorf("%w: neither id nor label", ErrBadURI)
	}
	return cx.FindKeyPairs(id, label)
}

func attrValue(set crypto11.AttributeSet, t crypto11.AttributeType) []byte {
	if a, ok := set[t]; ok && a != nil {
		return a.Value
	}
	return nil
}

// remember wraps a crypto11 signer found or generated in context c, reusing the
// wrapper already handed out for the same CKA_ID.
func (s *PKCS11Store) remember(c *p11Conn, inner crypto11.Signer, label string, id []byte) *p11Signer {
	key := hex.EncodeToString(id)
	s.mu.Lock()
	k, ok := s.signers[key]
	if ok && !samePublicKey(k.pub, inner.Public()) {
		ok = false // the id now holds another key; old signers keep refusing to sign
	}
	if !ok {
		k = &p11Signer{store: s, label: label, id: bytes.Clone(id), pub: inner.Public(), gen: c.gen, inner: inner}
		s.signers[key] = k
	}
	s.mu.Unlock()
	if ok {
		k.adopt(c.gen, inner) // outside s.mu: k.mu is always taken before s.mu
	}
	return k
}

// Attributes reads the protection attributes of the private key a URI names,
// for operators' checks (ca probe) and tests.
func (s *PKCS11Store) Attributes(ctx context.Context, uri string) (KeyAttributes, error) {
	key, err := s.Find(ctx, uri)
	if err != nil {
		return KeyAttributes{}, err
	}
	k := key.Signer.(*p11Signer)
	c, inner, err := k.resolve(ctx)
	if err != nil {
		return KeyAttributes{}, err
	}
	var (
		label, id []byte
		states    = map[crypto11.AttributeType]attrState{}
		pubStates = map[crypto11.AttributeType]attrState{}
	)
	err = s.do(ctx, c, s.cfg.OpTimeout, func(cx *crypto11.Context) error {
		set, err := cx.GetAttributes(inner, []crypto11.AttributeType{crypto11.CkaLabel, crypto11.CkaId})
		if err != nil {
			return err
		}
		label, id = attrValue(set, crypto11.CkaLabel), attrValue(set, crypto11.CkaId)
		for _, t := range []crypto11.AttributeType{
			crypto11.CkaToken, crypto11.CkaPrivate, crypto11.CkaSensitive, crypto11.CkaExtractable,
			crypto11.CkaAlwaysSensitive, crypto11.CkaNeverExtractable, crypto11.CkaLocal,
			crypto11.CkaSign, crypto11.CkaDecrypt, crypto11.CkaUnwrap, crypto11.CkaDerive,
		} {
			if states[t], err = readBool(cx, inner, t, false); err != nil {
				return err
			}
		}
		for _, t := range []crypto11.AttributeType{crypto11.CkaVerify, crypto11.CkaEncrypt, crypto11.CkaWrap} {
			if pubStates[t], err = readBool(cx, inner, t, true); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return KeyAttributes{}, fmt.Errorf("hsm: attributes of %s: %w", uri, err)
	}
	b := func(t crypto11.AttributeType) bool { return states[t] == attrTrue }
	pb := func(t crypto11.AttributeType) bool { return pubStates[t] == attrTrue }
	return KeyAttributes{
		Label: string(label), ID: id,
		Token: b(crypto11.CkaToken), Private: b(crypto11.CkaPrivate), Sensitive: b(crypto11.CkaSensitive),
		Extractable: b(crypto11.CkaExtractable), AlwaysSensitive: b(crypto11.CkaAlwaysSensitive),
		NeverExtractable: b(crypto11.CkaNeverExtractable), Local: b(crypto11.CkaLocal),
		Sign: b(crypto11.CkaSign), Decrypt: b(crypto11.CkaDecrypt), Unwrap: b(crypto11.CkaUnwrap),
		Derive:       b(crypto11.CkaDerive),
		PublicVerify: pb(crypto11.CkaVerify), PublicEncrypt: pb(crypto11.CkaEncrypt), PublicWrap: pb(crypto11.CkaWrap),
	}, nil
}

// Ping checks that the token answers and still holds this store's keys,
// without signing: readiness probes call it, anonymous clients can make them
// call it, and a CA key must not sign for them. While calls abandoned at
// their deadline have not returned (Workers.Stuck), Ping fails at once with
// ErrUnavailable: signing hangs even if a search still answers. With a key handed out it
// finds that key pair on the token again by CKA_ID and label (a session and an
// object search on the token) and checks its public key; before any key was
// handed out it reads random bytes from the token through a session. A token
// that no longer holds the key is retired like a lost one, so that the next
// call reconnects (after the backoff). While the token is unavailable Ping
// returns ErrUnavailable (after one bounded reconnect attempt, if the backoff
// allows one).
func (s *PKCS11Store) Ping(ctx context.Context) error {
	if n := s.workers.Stuck(); n > 0 {
		// A token whose signatures hang may still answer a search: while
		// calls are stuck past their deadline the store is not ready,
		// whatever the probe would say.
		return fmt.Errorf("hsm: ping: %w: %d calls on the token have not returned since their deadline", ErrUnavailable, n)
	}
	c, err := s.connection(ctx)
	if err != nil {
		return err
	}
	s.mu.Lock()
	var k *p11Signer
	for _, cand := range s.signers {
		if k == nil || bytes.Compare(cand.id, k.id) < 0 {
			k = cand
		}
	}
	s.mu.Unlock()
	if k == nil {
		return s.do(ctx, c, s.cfg.OpTimeout, func(cx *crypto11.Context) error {
			r, err := cx.NewRandomReader()
			if err != nil {
				return err
			}
			_, err = r.Read(make([]byte, 8))
			return err
		})
	}
	var found []crypto11.Signer
	err = s.do(ctx, c, s.cfg.OpTimeout, func(cx *crypto11.Context) error {
		var err error
		found, err = cx.FindKeyPairs(k.id, []byte(k.label))
		return err
	})
	if err != nil {
		return fmt.Errorf("hsm: ping: find %q: %w", k.label, err)
	}
	if len(found) != 1 || !samePublicKey(found[0].Public(), k.pub) {
		cause := fmt.Errorf("%w: the token no longer holds %q (%d key pairs carry its id and label)", ErrKeyNotFound, k.label, len(found))
		s.markBroken(c, cause)
		return fmt.Errorf("hsm: ping: %w: %w", ErrUnavailable, cause)
	}
	return nil
}

// Close closes the crypto11 context (which finalizes the module when it is
// the last user). Signers handed out fail with ErrClosed afterwards. Close
// waits at most OpTimeout for operations in flight.
func (s *PKCS11Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	conns := s.retiring
	if s.conn != nil {
		conns = append(conns, s.conn)
	}
	s.conn, s.retiring = nil, nil
	attempt := s.attempt
	s.mu.Unlock()

	done := make(chan struct{})
	go func() {
		defer close(done)
		if attempt != nil {
			<-attempt.done // runReconnect closes what it opened once it sees closed
		}
		for _, c := range conns {
			c.close()
		}
	}()
	t := time.NewTimer(s.cfg.OpTimeout)
	defer t.Stop()
	select {
	case <-done:
		s.log.Info("PKCS#11 token closed")
		return nil
	case <-t.C:
		return fmt.Errorf("hsm: close PKCS#11 token: operations still running after %s", s.cfg.OpTimeout)
	}
}
