package sqlite_test

import (
	"testing"

	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/pkg/store/storetest"
)

func BenchmarkRecordIssuance(b *testing.B) { storetest.BenchRecordIssuance(b, testkit.SQLite(b)) }

// BenchmarkRecordIssuanceParallel: many concurrent callers (group commit).
func BenchmarkRecordIssuanceParallel(b *testing.B) {
	storetest.BenchRecordIssuanceParallel(b, testkit.SQLite(b))
}

func BenchmarkGetCertificate(b *testing.B) { storetest.BenchGetCertificate(b, testkit.SQLite(b)) }

func BenchmarkListCertificates(b *testing.B) { storetest.BenchListCertificates(b, testkit.SQLite(b)) }

func BenchmarkDenials(b *testing.B) { storetest.BenchDenials(b, testkit.SQLite(b)) }

func BenchmarkRevokeMany(b *testing.B) { storetest.BenchRevokeMany(b, testkit.SQLite(b)) }

func BenchmarkGetOCSPResponse(b *testing.B) { storetest.BenchGetOCSPResponse(b, testkit.SQLite(b)) }

func BenchmarkPutOCSPResponses(b *testing.B) { storetest.BenchPutOCSPResponses(b, testkit.SQLite(b)) }
