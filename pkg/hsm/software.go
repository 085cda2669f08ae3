package hsm

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/workload-ca/workload-ca/internal/atomicfile"
)

// keyFileSuffix ends every software key file name: <name>.key.pem.
const keyFileSuffix = ".key.pem"

// SoftwareStore is the embedded development KeyStore: each key is a PKCS#8 PEM
// file <name>.key.pem in one directory (mode 0700; files 0600, written to a
// temporary file and published without replacing an existing key). Key files
// readable or writable by group or others are refused with
// ErrInsecureKeyFile. URIs are softkey:<name>. Key bytes are never logged.
type SoftwareStore struct {
	dir    string
	log    *slog.Logger
	closed atomic.Bool

	mu      sync.Mutex // guards signers and serialises Generate
	signers map[string]*softSigner
}

var _ KeyStore = (*SoftwareStore)(nil)

// OpenSoftware opens (creating with mode 0700 if needed) the key directory
// dir. A pre-existing directory that group or others can access is used, with
// a warning.
func OpenSoftware(dir string, log *slog.Logger) (*SoftwareStore, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if dir == "" {
		return nil, errors.New("hsm: software key directory is required")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("hsm: create key directory: %w", err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("hsm: key directory: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("hsm: key directory %s is not a directory", dir)
	}
	log = log.With("component", "hsm", "key_dir", dir)
	if fi.Mode().Perm()&0o077 != 0 {
		log.Warn("software key directory is accessible to group or others; chmod 700 it", "mode", fi.Mode().Perm().String())
	}
	log.Warn("using software keys: for development only, keys are files on disk")
	return &SoftwareStore{dir: dir, log: log, signers: map[string]*softSigner{}}, nil
}

func (s *SoftwareStore) path(name string) string {
	return filepath.Join(s.dir, name+keyFileSuffix)
}

// Generate creates a key in memory with crypto/rand, writes it as PKCS#8 PEM
// to a temporary file (0600) and links it into place, which fails with
// ErrKeyExists if the name is taken, even by another process.
func (s *SoftwareStore) Generate(ctx context.Context, name string, kt KeyType) (Key, error) {
	if err := validateName(name); err != nil {
		return Key{}, err
	}
	if !kt.Valid() {
		return Key{}, fmt.Errorf("%w: %q", ErrBadKeyType, kt)
	}
	if s.closed.Load() {
		return Key{}, ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return Key{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	final := s.path(name)
	if _, err := os.Lstat(final); err == nil {
		return Key{}, fmt.Errorf("hsm: generate %q: %w", name, ErrKeyExists)
	}

	var priv crypto.Signer
	var err error
	switch kt {
	case ECDSAP256:
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case ECDSAP384:
		priv, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case RSA3072:
		priv, err = rsa.GenerateKey(rand.Reader, 3072)
	}
	if err != nil {
		return Key{}, fmt.Errorf("hsm: generate %q: %w", name, err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return Key{}, fmt.Errorf("hsm: encode %q: %w", name, err)
	}
	if err := writeKeyFile(s.dir, final, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})); err != nil {
		return Key{}, fmt.Errorf("hsm: write key %q: %w", name, err)
	}
	k := &softSigner{store: s, name: name, priv: priv}
	s.signers[name] = k
	s.log.Info("software key generated", "key", name, "type", string(kt))
	return Key{URI: softkeyScheme + name, Signer: k}, nil
}

// writeKeyFile writes pemBytes to a 0600 temporary file in dir, syncs it and
// hard-links it to final, so the key appears complete or not at all and an
// existing key is never replaced (ErrKeyExists). Where hard links are not
// supported it falls back to rename after checking final does not exist.
func writeKeyFile(dir, final string, pemBytes []byte) (err error) {
	tmp, err := atomicfile.WriteTemp(dir, ".tmp-key-*", pemBytes, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		_ = os.Remove(tmp)
	}()
	switch err := os.Link(tmp, final); {
	case errors.Is(err, fs.ErrExist):
		return ErrKeyExists
	case err != nil:
		if _, statErr := os.Lstat(final); statErr == nil {
			return ErrKeyExists
		}
		if err := os.Rename(tmp, final); err != nil {
			return err
		}
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Find loads the key a softkey:<name> URI names. It fails with ErrBadURI for
// other URIs or invalid names, ErrKeyNotFound if there is no such file, and
// ErrInsecureKeyFile if the file is not a regular file or has any group or
// other permission bits. Finding the same key twice returns the same Signer.
func (s *SoftwareStore) Find(ctx context.Context, uri string) (Key, error) {
	name, err := parseSoftkeyURI(uri)
	if err != nil {
		return Key{}, err
	}
	if s.closed.Load() {
		return Key{}, ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return Key{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if k, ok := s.signers[name]; ok {
		return Key{URI: uri, Signer: k}, nil
	}
	priv, err := loadKeyFile(s.path(name))
	if err != nil {
		return Key{}, fmt.Errorf("hsm: find %s: %w", uri, err)
	}
	k := &softSigner{store: s, name: name, priv: priv}
	s.signers[name] = k
	return Key{URI: uri, Signer: k}, nil
}

// loadKeyFile reads one key file, refusing symlinks, non-regular files and
// group/other permissions before reading a byte of it.
func loadKeyFile(path string) (crypto.Signer, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|noFollow, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrKeyNotFound
	}
	if err != nil {
		if fi, lerr := os.Lstat(path); lerr == nil && fi.Mode()&fs.ModeSymlink != 0 {
			return nil, fmt.Errorf("%w: %s is a symlink", ErrInsecureKeyFile, path)
		}
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: %s is not a regular file", ErrInsecureKeyFile, path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s has mode %04o, group and others must have no access (chmod 600 it)",
			ErrInsecureKeyFile, path, perm)
	}
	b, err := io.ReadAll(io.LimitReader(f, 64<<10))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("hsm: %s holds no PKCS#8 PRIVATE KEY PEM block", path)
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("hsm: %s: cannot parse PKCS#8 key", path)
	}
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		return k, nil
	case *rsa.PrivateKey:
		return k, nil
	}
	return nil, fmt.Errorf("hsm: %s: unsupported key algorithm %T", path, key)
}

// Ping checks, without signing, that the key directory and the files of the
// keys this store has handed out are still there.
func (s *SoftwareStore) Ping(ctx context.Context) error {
	if s.closed.Load() {
		return ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	fi, err := os.Stat(s.dir)
	if err != nil {
		return fmt.Errorf("%w: key directory: %w", ErrUnavailable, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%w: key directory %s is not a directory", ErrUnavailable, s.dir)
	}
	s.mu.Lock()
	names := make([]string, 0, len(s.signers))
	for name := range s.signers {
		names = append(names, name)
	}
	s.mu.Unlock()
	for _, name := range names {
		if _, err := os.Stat(s.path(name)); err != nil {
			return fmt.Errorf("%w: key file of %q: %w", ErrUnavailable, name, err)
		}
	}
	return nil
}

// Close forgets the loaded keys; signers handed out fail with ErrClosed.
func (s *SoftwareStore) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.mu.Lock()
	s.signers = map[string]*softSigner{}
	s.mu.Unlock()
	return nil
}

// softSigner hides the private key behind crypto.Signer, so callers cannot
// type-assert their way to the key material, and stops signing once the store
// is closed.
type softSigner struct {
	store *SoftwareStore
	name  string
	priv  crypto.Signer
}

// Public returns the key's public half.
func (k *softSigner) Public() crypto.PublicKey { return k.priv.Public() }

// Sign signs digest: ASN.1 DER for ECDSA, PKCS#1 v1.5 or (with
// *rsa.PSSOptions) PSS for RSA. It fails with ErrClosed after Close.
func (k *softSigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if k.store.closed.Load() {
		return nil, ErrClosed
	}
	if err := checkDigest(digest, opts); err != nil {
		return nil, err
	}
	if r == nil {
		r = rand.Reader
	}
	sig, err := k.priv.Sign(r, digest, opts)
	if err != nil {
		return nil, fmt.Errorf("hsm: sign with %q: %w", k.name, err)
	}
	return sig, nil
}
