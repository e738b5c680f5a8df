/* devices.c - the simulated devices: an EC P-256 key each, a certificate
 * issued by the bench device CA, and a CSR for the same subject. All made
 * before a run starts, so the measured window holds only the protocol work.
 */
#include "bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

static void *read_pem(const char *file, int key)
{
	FILE *f = fopen(file, "r");
	void *obj;

	if (!f)
		return NULL;
	obj = key ? (void *)PEM_read_PrivateKey(f, NULL, NULL, NULL)
		  : (void *)PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	return obj;
}

static X509_NAME *device_name(size_t i)
{
	X509_NAME *nm = X509_NAME_new();
	char cn[32];

	snprintf(cn, sizeof(cn), "bench-%06zu", i);
	if (nm && X509_NAME_add_entry_by_txt(nm, "O", MBSTRING_ASC,
					     (const unsigned char *)"estgw bench", -1, -1, 0) &&
	    X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_ASC,
				       (const unsigned char *)cn, -1, -1, 0))
		return nm;
	X509_NAME_free(nm);
	return NULL;
}

static X509 *device_cert(EVP_PKEY *key, X509_NAME *nm, size_t i, X509 *ca,
			 EVP_PKEY *ca_key)
{
	X509 *x = X509_new();

	if (x && X509_set_version(x, 2) &&
	    ASN1_INTEGER_set(X509_get_serialNumber(x), (long)i + 1) &&
	    X509_set_subject_name(x, nm) &&
	    X509_set_issuer_name(x, X509_get_subject_name(ca)) &&
	    X509_set_pubkey(x, key) &&
	    X509_gmtime_adj(X509_getm_notBefore(x), -3600) &&
	    X509_gmtime_adj(X509_getm_notAfter(x), 30L * 86400) &&
	    X509_sign(x, ca_key, EVP_sha256()) > 0)
		return x;
	X509_free(x);
	return NULL;
}

static int device_csr(struct device *d, EVP_PKEY *key, X509_NAME *nm)
{
	X509_REQ *req = X509_REQ_new();
	unsigned char *der = NULL;
	int len = -1;

	if (req && X509_REQ_set_version(req, 0) &&
	    X509_REQ_set_subject_name(req, nm) && X509_REQ_set_pubkey(req, key) &&
	    X509_REQ_sign(req, key, EVP_sha256()) > 0)
		len = i2d_X509_REQ(req, &der);
	X509_REQ_free(req);
	if (len <= 0)
		return -1;
	d->csr = malloc((size_t)len);
	if (d->csr) {
		memcpy(d->csr, der, (size_t)len);
		d->csr_len = (size_t)len;
	}
	OPENSSL_free(der);
	return d->csr ? 0 : -1;
}

static X509_STORE *load_store(const char *file)
{
	X509_STORE *st = X509_STORE_new();

	if (st && X509_STORE_load_file(st, file) == 1)
		return st;
	X509_STORE_free(st);
	return NULL;
}

int devices_make(struct device_set *set, size_t n, const char *ca_cert,
		 const char *ca_key, const char *server_trust)
{
	X509 *ca = read_pem(ca_cert, 0);
	EVP_PKEY *cak = read_pem(ca_key, 1);
	int rc = -1;

	memset(set, 0, sizeof(*set));
	set->dev = calloc(n ? n : 1, sizeof(*set->dev));
	set->trust = server_trust ? load_store(server_trust) : NULL;
	if (!ca || !cak || !set->dev || (server_trust && !set->trust)) {
		fprintf(stderr, "estgw-bench: cannot load the device CA or the server trust\n");
		goto out;
	}
	for (set->n = 0; set->n < n; set->n++) {
		struct device *d = &set->dev[set->n];
		X509_NAME *nm = device_name(set->n);
		EVP_PKEY *key = EVP_EC_gen("P-256");

		d->key = key;
		d->cert = nm && key ? device_cert(key, nm, set->n, ca, cak) : NULL;
		if (!d->cert || device_csr(d, key, nm) != 0) {
			X509_NAME_free(nm);
			set->n++;
			fprintf(stderr, "estgw-bench: cannot make device %zu\n", set->n);
			goto out;
		}
		X509_NAME_free(nm);
	}
	rc = 0;
out:
	ERR_clear_error();
	X509_free(ca);
	EVP_PKEY_free(cak);
	return rc;
}

void devices_free(struct device_set *set)
{
	for (size_t i = 0; i < set->n; i++) {
		EVP_PKEY_free(set->dev[i].key);
		X509_free(set->dev[i].cert);
		free(set->dev[i].csr);
	}
	free(set->dev);
	X509_STORE_free(set->trust);
	memset(set, 0, sizeof(*set));
}
