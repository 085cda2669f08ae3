/*
 * hangmodule: a PKCS#11 module that hangs on purpose, for tests.
 *
 * It loads the real module named by WCA_HANG_TARGET (SoftHSM in the tests),
 * hands out a copy of that module's CK_FUNCTION_LIST with C_SignInit and
 * C_Sign replaced, and forwards everything else unchanged. While the file
 * named by WCA_HANG_FLAG exists, a replaced call blocks (polling every 10 ms)
 * and forwards once the file is gone: a network HSM behind a partition, which
 * neither answers nor fails, and answers again when the partition heals.
 *
 * It also fails C_GenerateKeyPair with CKR_GENERAL_ERROR on demand, the way
 * tokens answer a template they refuse or a device they lost: while
 * WCA_HANG_FLAG.genfail exists, every call; when WCA_HANG_FLAG.genfail-once
 * exists, the next call (which removes the file); and while
 * WCA_HANG_FLAG.down exists, C_GenerateKeyPair and C_FindObjectsInit both
 * (a device that answers nothing).
 *
 * Built by internal/testkit (HangingSoftHSM) with gcc against the OASIS
 * PKCS#11 headers that github.com/miekg/pkcs11 vendors.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pkcs11go.h"

static pthread_once_t once = PTHREAD_ONCE_INIT;
static CK_RV load_rv = CKR_GENERAL_ERROR;
static CK_FUNCTION_LIST_PTR real;
static CK_FUNCTION_LIST wrapped;
static char flag[4096];
static char genfail[4200], genfail_once[4200], down[4200];

static int exists(const char *p)
{
	return p[0] != '\0' && access(p, F_OK) == 0;
}

/* hang blocks while the flag file exists. */
static void hang(void)
{
	struct timespec ts = {0, 10 * 1000 * 1000};
	if (flag[0] == '\0')
		return;
	while (access(flag, F_OK) == 0)
		nanosleep(&ts, NULL);
}

static CK_RV hang_SignInit(CK_SESSION_HANDLE s, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE k)
{
	hang();
	return real->C_SignInit(s, m, k);
}

static CK_RV hang_Sign(CK_SESSION_HANDLE s, CK_BYTE_PTR data, CK_ULONG n, CK_BYTE_PTR sig, CK_ULONG_PTR siglen)
{
	hang();
	return real->C_Sign(s, data, n, sig, siglen);
}

static CK_RV fail_GenerateKeyPair(CK_SESSION_HANDLE s, CK_MECHANISM_PTR m, CK_ATTRIBUTE_PTR pub, CK_ULONG npub,
				  CK_ATTRIBUTE_PTR priv, CK_ULONG npriv, CK_OBJECT_HANDLE_PTR hpub, CK_OBJECT_HANDLE_PTR hpriv)
{
	if (exists(down) || exists(genfail))
		return CKR_GENERAL_ERROR;
	if (exists(genfail_once) && unlink(genfail_once) == 0)
		return CKR_GENERAL_ERROR;
	return real->C_GenerateKeyPair(s, m, pub, npub, priv, npriv, hpub, hpriv);
}

static CK_RV fail_FindObjectsInit(CK_SESSION_HANDLE s, CK_ATTRIBUTE_PTR t, CK_ULONG n)
{
	if (exists(down))
		return CKR_GENERAL_ERROR;
	return real->C_FindObjectsInit(s, t, n);
}

static void load(void)
{
	const char *target = getenv("WCA_HANG_TARGET");
	const char *f = getenv("WCA_HANG_FLAG");
	void *h;
	CK_C_GetFunctionList get;

	if (target == NULL || *target == '\0') {
		fprintf(stderr, "hangmodule: WCA_HANG_TARGET is not set\n");
		return;
	}
	if (f != NULL) {
		strncpy(flag, f, sizeof(flag) - 1);
		snprintf(genfail, sizeof(genfail), "%s.genfail", flag);
		snprintf(genfail_once, sizeof(genfail_once), "%s.genfail-once", flag);
		snprintf(down, sizeof(down), "%s.down", flag);
	}
	/* Never closed: the module may be finalized and initialized again. */
	h = dlopen(target, RTLD_NOW | RTLD_LOCAL);
	if (h == NULL) {
		fprintf(stderr, "hangmodule: dlopen %s: %s\n", target, dlerror());
		return;
	}
	get = (CK_C_GetFunctionList)dlsym(h, "C_GetFunctionList");
	if (get == NULL) {
		fprintf(stderr, "hangmodule: %s has no C_GetFunctionList\n", target);
		return;
	}
	load_rv = get(&real);
	if (load_rv != CKR_OK)
		return;
	memcpy(&wrapped, real, sizeof(wrapped));
	wrapped.C_GetFunctionList = C_GetFunctionList;
	wrapped.C_SignInit = hang_SignInit;
	wrapped.C_Sign = hang_Sign;
	wrapped.C_GenerateKeyPair = fail_GenerateKeyPair;
	wrapped.C_FindObjectsInit = fail_FindObjectsInit;
}

CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list)
{
	if (list == NULL)
		return CKR_ARGUMENTS_BAD;
	pthread_once(&once, load);
	if (load_rv != CKR_OK)
		return load_rv;
	*list = &wrapped;
	return CKR_OK;
}
