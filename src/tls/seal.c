/* seal.c - AES-256-GCM sealing of the values estgw keeps in the shared
 * store (see seal.h). Layout of a sealed value: "E1" | nonce (12) |
 * cipher text | tag (16); the additional data is the store key name.
 */
#include "tls/seal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#define NONCE_LEN 12
#define TAG_LEN 16
#define MAGIC "E1"

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* 64 hex digits -> 32 bytes; -EINVAL otherwise. */
static int from_hex(const uint8_t *s, size_t n, uint8_t key[ESTGW_SEAL_KEY_LEN])
{
	if (n != 2 * ESTGW_SEAL_KEY_LEN)
		return -EINVAL;
	for (size_t i = 0; i < ESTGW_SEAL_KEY_LEN; i++) {
		int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return -EINVAL;
		key[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

int estgw_seal_load(const char *path, uint8_t key[ESTGW_SEAL_KEY_LEN],
		    char *err, size_t errlen)
{
	uint8_t buf[2 * ESTGW_SEAL_KEY_LEN + 4];
	struct stat st;
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -errno;
	}
	if (fstat(fd, &st) == 0 && (st.st_mode & 077))
		snprintf(err, errlen, "%s: readable by others than its owner", path);
	n = read(fd, buf, sizeof(buf));
	close(fd);
	if (n == ESTGW_SEAL_KEY_LEN) {
		memcpy(key, buf, ESTGW_SEAL_KEY_LEN);
	} else {
		while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
			n--;
		if (n < 0 || from_hex(buf, (size_t)n, key) != 0) {
			explicit_bzero(buf, sizeof(buf));
			snprintf(err, errlen, "%s: expected 32 bytes or 64 hex digits", path);
			return -EINVAL;
		}
	}
	explicit_bzero(buf, sizeof(buf));
	return 0;
}

/* One AES-256-GCM pass; @p enc 1: seal (writes the tag), 0: open (checks it). */
static int gcm(int enc, const uint8_t *key, const uint8_t *nonce, const void *aad,
	       size_t aadlen, const uint8_t *in, size_t len, uint8_t *out, uint8_t *tag)
{
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	int ok, n = 0, fin = 0;

	if (!c)
		return -EIO;
	ok = EVP_CipherInit_ex(c, EVP_aes_256_gcm(), NULL, NULL, NULL, enc) == 1 &&
	     EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, NONCE_LEN, NULL) == 1 &&
	     EVP_CipherInit_ex(c, NULL, NULL, key, nonce, enc) == 1 &&
	     EVP_CipherUpdate(c, NULL, &n, aad, (int)aadlen) == 1 &&
	     (len == 0 || EVP_CipherUpdate(c, out, &n, in, (int)len) == 1) &&
	     (enc || EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, TAG_LEN, tag) == 1) &&
	     EVP_CipherFinal_ex(c, out + (len ? n : 0), &fin) == 1 &&
	     (!enc || EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, TAG_LEN, tag) == 1);
	EVP_CIPHER_CTX_free(c);
	return ok ? 0 : -EBADMSG;
}

int estgw_seal(const uint8_t key[ESTGW_SEAL_KEY_LEN], const void *aad,
	       size_t aadlen, const uint8_t *in, size_t len, uint8_t *out)
{
	uint8_t *nonce = out + 2, *ct = nonce + NONCE_LEN;

	if (len > 64u << 20)
		return -EIO;
	memcpy(out, MAGIC, 2);
	if (RAND_bytes(nonce, NONCE_LEN) != 1)
		return -EIO;
	return gcm(1, key, nonce, aad, aadlen, in, len, ct, ct + len) ? -EIO : 0;
}

int estgw_unseal(const uint8_t key[ESTGW_SEAL_KEY_LEN], const void *aad,
		 size_t aadlen, const uint8_t *in, size_t len, uint8_t *out,
		 size_t *outlen)
{
	uint8_t tag[TAG_LEN];
	size_t n;

	if (len < ESTGW_SEAL_OVERHEAD || memcmp(in, MAGIC, 2) != 0)
		return -EBADMSG;
	n = len - ESTGW_SEAL_OVERHEAD;
	memcpy(tag, in + 2 + NONCE_LEN + n, TAG_LEN);
	if (gcm(0, key, in + 2, aad, aadlen, in + 2 + NONCE_LEN, n, out, tag) != 0) {
		explicit_bzero(out, n);
		return -EBADMSG;
	}
	*outlen = n;
	return 0;
}

void estgw_seal_digest(const void *in, size_t len, uint8_t out[32])
{
	unsigned int n = 32;

	if (EVP_Digest(in, len, out, &n, EVP_sha256(), NULL) != 1)
		memset(out, 0, 32);
}
