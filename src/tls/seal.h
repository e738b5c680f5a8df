/* seal.h - AES-256-GCM for what estgw puts in the shared store ([cluster]
 * seal_key, K1): a kept answer (a certificate, or a private key from
 * /skg and /skc) is sealed before it leaves the instance and opened when it
 * comes back, so the store never holds a key in clear and a value written
 * by anyone without the key is refused. The key exists only in the file
 * the instances read at start-up. OpenSSL types stay in src/tls/.
 */
#ifndef ESTGW_TLS_SEAL_H
#define ESTGW_TLS_SEAL_H

#include <stddef.h>
#include <stdint.h>

#define ESTGW_SEAL_KEY_LEN 32
/** Bytes a sealed value has beyond its plain text: "E1", nonce, tag. */
#define ESTGW_SEAL_OVERHEAD (2 + 12 + 16)

/** Read the key from @p path: 32 bytes, or 64 hex digits (a final newline
 *  allowed). 0, or a negative errno with the reason in @p err. */
int estgw_seal_load(const char *path, uint8_t key[ESTGW_SEAL_KEY_LEN],
		    char *err, size_t errlen);

/** Seal @p in into @p out (room for @p len + ESTGW_SEAL_OVERHEAD), bound
 *  to @p aad (the store key name: a value moved to another name does not
 *  open). A fresh random nonce each time. 0 or -EIO. */
int estgw_seal(const uint8_t key[ESTGW_SEAL_KEY_LEN], const void *aad,
	       size_t aadlen, const uint8_t *in, size_t len, uint8_t *out);

/** Open a sealed value into @p out (room for @p len bytes); *outlen gets
 *  the plain length. -EBADMSG: not sealed with this key for this name. */
int estgw_unseal(const uint8_t key[ESTGW_SEAL_KEY_LEN], const void *aad,
		 size_t aadlen, const uint8_t *in, size_t len, uint8_t *out,
		 size_t *outlen);

/** SHA-256 of @p len bytes (store key names of client identities). */
void estgw_seal_digest(const void *in, size_t len, uint8_t out[32]);

#endif
