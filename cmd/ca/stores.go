package main

import (
	"github.com/workload-ca/workload-ca/pkg/audit"
	"github.com/workload-ca/workload-ca/pkg/bundle"
	"github.com/workload-ca/workload-ca/pkg/dashboard"
	"github.com/workload-ca/workload-ca/pkg/enroll"
	"github.com/workload-ca/workload-ca/pkg/hold"
	"github.com/workload-ca/workload-ca/pkg/issuer"
	"github.com/workload-ca/workload-ca/pkg/jwtkeys"
	"github.com/workload-ca/workload-ca/pkg/retention"
	"github.com/workload-ca/workload-ca/pkg/revoke"
	"github.com/workload-ca/workload-ca/pkg/server"
	"github.com/workload-ca/workload-ca/pkg/store"
	"github.com/workload-ca/workload-ca/pkg/store/postgres"
	"github.com/workload-ca/workload-ca/pkg/store/sqlite"
	"github.com/workload-ca/workload-ca/pkg/telemetry"
)

// Each consumer declares the few store methods it uses, next to its code.
// These are the groups `ca serve` wires a store into; both stores must
// satisfy every one, or this package does not compile. A store cannot lack a capability a
// route needs and fail at run time (as a type assertion would).
type (
	// issuanceStores: signing and recording a certificate, deciding an
	// enrollment or a renewal, holds.
	issuanceStores interface {
		issuer.Store
		enroll.ReplayMarker
		enroll.CertificateRecords
		server.EnrollStore
		server.JWTStore
		hold.Store
	}
	// revocationStores: revoking, CRLs, OCSP, the trust bundle.
	revocationStores interface {
		revoke.Store
		issuer.ResponderStore
		bundle.Store
		bundle.VersionSource
		server.IssuerLister
	}
	// inventoryStores: the inventory, the audit log and its checkpoints,
	// denials, retention, the dashboard.
	inventoryStores interface {
		server.OperatorStore
		server.DenialStore
		server.AuthzStore
		telemetry.InventoryStore
		dashboard.Store
		audit.Source
		audit.CheckpointSource
		audit.CheckpointStore
		audit.ArchiveStore
		retention.Store
	}
	// keyLifecycleStores: CA rotation and the JWT-SVID keys' lifecycle.
	keyLifecycleStores interface {
		issuer.RotationStore
		jwtkeys.ManagerStore
		jwtkeys.SignerStore
		jwtkeys.KeyLister
	}
	consumerStores interface {
		issuanceStores
		revocationStores
		inventoryStores
		keyLifecycleStores
	}
)

var (
	_ consumerStores = (*postgres.Store)(nil)
	_ consumerStores = (*sqlite.Store)(nil)
	_ consumerStores = store.Store(nil)
)
