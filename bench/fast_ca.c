/* fast_ca.c - a fast RFC 7030 EST CA for the benchmark (bench-only).
 *
 * Owns: HTTPS (libevent evhttp over OpenSSL, one thread, one event loop) with a
 * required client certificate, and the EST operations the bench uses:
 *   GET  <base>[/label]/cacerts          certs-only PKCS#7 (est-root, est-sub)
 *   POST <base>[/label]/simpleenroll     certs-only PKCS#7 with the issued cert
 *   POST <base>[/label]/simplereenroll   (same)
 * Bodies are Base64 (RFC 8951). The CSR is verified and signed in-process by
 * est-sub (ECDSA P-256, SHA-256), so the upstream is not the bottleneck of
 * the measurement (tests/ca/est_ca.py forks the openssl CLI per request).
 * Must not: be used as a real CA (no policy, no RA check, no persistence).
 *
 * Usage: fast-ca --pki DIR [--host 127.0.0.1] [--port 0] [--port-file F]
 *                [--client-trust PEM]...  (default: est-root.crt est-sub.crt)
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/pkcs7.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#define MAX_BODY 65536
#define CT_P7 "application/pkcs7-mime; smime-type=certs-only"

struct ca {
	SSL_CTX *tls;
	X509 *sub, *root;
	EVP_PKEY *sub_key;
	char *cacerts_b64;
	unsigned long issued, requests;
};

static X509 *read_cert(const char *dir, const char *name)
{
	char path[4096];
	FILE *f;
	X509 *x;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "r");
	if (!f)
		return NULL;
	x = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	return x;
}

static EVP_PKEY *read_key(const char *dir, const char *name)
{
	char path[4096];
	FILE *f;
	EVP_PKEY *k;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "r");
	if (!f)
		return NULL;
	k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	return k;
}

/* DER -> one-line Base64 (malloc'd). */
static char *b64(const unsigned char *der, int len)
{
	char *out = malloc((size_t)(4 * ((len + 2) / 3) + 1));

	if (out)
		EVP_EncodeBlock((unsigned char *)out, der, len);
	return out;
}

/* Base64 with any whitespace -> DER; returns the length or -1. */
static int unb64(const char *in, size_t n, unsigned char **out)
{
	char *clean = malloc(n + 1);
	size_t m = 0, pad = 0;
	int len;

	if (!clean)
		return -1;
	for (size_t i = 0; i < n; i++)
		if (!isspace((unsigned char)in[i]))
			clean[m++] = in[i];
	clean[m] = '\0';
	if (m == 0 || m % 4) {
		free(clean);
		return -1;
	}
	pad = (clean[m - 1] == '=') + (clean[m - 2] == '=');
	*out = malloc(m / 4 * 3);
	len = *out ? EVP_DecodeBlock(*out, (unsigned char *)clean, (int)m) : -1;
	free(clean);
	if (len < 0) {
		free(*out);
		*out = NULL;
		return -1;
	}
	return len - (int)pad;
}

/* certs-only SignedData holding the given certificates, as Base64. */
static char *certs_only_b64(X509 **certs, int n)
{
	PKCS7 *p7 = PKCS7_new();
	unsigned char *der = NULL;
	char *out = NULL;
	int len;

	if (!p7 || !PKCS7_set_type(p7, NID_pkcs7_signed) ||
	    !PKCS7_content_new(p7, NID_pkcs7_data))
		goto done;
	for (int i = 0; i < n; i++)
		if (!PKCS7_add_certificate(p7, certs[i]))
			goto done;
	len = i2d_PKCS7(p7, &der);
	if (len > 0)
		out = b64(der, len);
done:
	OPENSSL_free(der);
	PKCS7_free(p7);
	return out;
}

static int add_ext(X509 *x, int nid, const char *value)
{
	X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, NULL, nid, value);
	int ok = e && X509_add_ext(x, e, -1);

	X509_EXTENSION_free(e);
	return ok;
}

/* Verify the CSR and issue a one-year client certificate for its subject
 * and key, signed by est-sub. */
static X509 *issue(struct ca *ca, X509_REQ *req)
{
	X509 *x = X509_new();
	EVP_PKEY *pub = X509_REQ_get0_pubkey(req);
	unsigned char serial[16];
	BIGNUM *bn = NULL;
	int ok = 0;

	if (!x || !pub || X509_REQ_verify(req, pub) != 1 ||
	    RAND_bytes(serial, sizeof(serial)) != 1)
		goto done;
	serial[0] &= 0x7f;
	bn = BN_bin2bn(serial, sizeof(serial), NULL);
	ok = bn && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) &&
	     X509_set_version(x, 2) &&
	     X509_set_subject_name(x, X509_REQ_get_subject_name(req)) &&
	     X509_set_issuer_name(x, X509_get_subject_name(ca->sub)) &&
	     X509_set_pubkey(x, pub) &&
	     X509_gmtime_adj(X509_getm_notBefore(x), 0) &&
	     X509_gmtime_adj(X509_getm_notAfter(x), 365L * 86400) &&
	     add_ext(x, NID_basic_constraints, "critical,CA:FALSE") &&
	     add_ext(x, NID_key_usage, "critical,digitalSignature") &&
	     add_ext(x, NID_ext_key_usage, "clientAuth") &&
	     X509_sign(x, ca->sub_key, EVP_sha256()) > 0;
done:
	BN_free(bn);
	if (!ok) {
		ERR_clear_error();
		X509_free(x);
		return NULL;
	}
	return x;
}

static void reply(struct evhttp_request *r, int code, const char *ct,
		  const char *body)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(r);
	struct evbuffer *out = evbuffer_new();

	evhttp_add_header(h, "Content-Type", ct);
	if (code == 200)
		evhttp_add_header(h, "Content-Transfer-Encoding", "base64");
	if (out)
		evbuffer_add(out, body, strlen(body));
	evhttp_send_reply(r, code, code == 200 ? "OK" : "Error", out);
	if (out)
		evbuffer_free(out);
}

static void op_enroll(struct ca *ca, struct evhttp_request *r)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(r);
	size_t n = evbuffer_get_length(in);
	const char *txt = (const char *)evbuffer_pullup(in, (ev_ssize_t)n);
	unsigned char *der = NULL;
	const unsigned char *p;
	int len = txt ? unb64(txt, n, &der) : -1;
	X509_REQ *req = NULL;
	X509 *cert = NULL;
	char *body = NULL;

	p = der;
	if (len > 0)
		req = d2i_X509_REQ(NULL, &p, len);
	if (req)
		cert = issue(ca, req);
	if (cert)
		body = certs_only_b64(&cert, 1);
	if (body) {
		ca->issued++;
		reply(r, 200, CT_P7, body);
	} else {
		reply(r, 400, "text/plain", "bad CSR\n");
	}
	free(body);
	X509_free(cert);
	X509_REQ_free(req);
	free(der);
}

/* No Nagle on the connection of @p r: evhttp writes the head and the body
 * as two TLS records, and the second one would wait for the ACK of the
 * first, which the client delays (about 40 ms on Linux): every answer
 * would take that long. */
static void no_delay(struct evhttp_request *r)
{
	struct evhttp_connection *c = evhttp_request_get_connection(r);
	struct bufferevent *bev = c ? evhttp_connection_get_bufferevent(c) : NULL;
	evutil_socket_t fd = bev ? bufferevent_getfd(bev) : -1;
	int one = 1;

	if (fd >= 0)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* The last path segment is the operation (<base>[/label]/op). */
static void on_request(struct evhttp_request *r, void *arg)
{
	struct ca *ca = arg;
	const char *uri = evhttp_request_get_uri(r);
	const char *op = strrchr(uri, '/');
	enum evhttp_cmd_type m = evhttp_request_get_command(r);

	ca->requests++;
	no_delay(r);
	op = op ? op + 1 : "";
	if (strcmp(op, "cacerts") == 0 && m == EVHTTP_REQ_GET)
		reply(r, 200, CT_P7, ca->cacerts_b64);
	else if ((strcmp(op, "simpleenroll") == 0 ||
		  strcmp(op, "simplereenroll") == 0) && m == EVHTTP_REQ_POST)
		op_enroll(ca, r);
	else
		reply(r, 404, "text/plain", "not found\n");
}

static struct bufferevent *on_conn(struct event_base *base, void *arg)
{
	struct ca *ca = arg;
	SSL *ssl = SSL_new(ca->tls);

	if (!ssl)
		return NULL;
	return bufferevent_openssl_socket_new(base, -1, ssl,
					      BUFFEREVENT_SSL_ACCEPTING,
					      BEV_OPT_CLOSE_ON_FREE);
}

static SSL_CTX *make_tls(const char *pki, char **trust, int ntrust)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	char path[4096], key[4096];

	if (!ctx)
		return NULL;
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	snprintf(path, sizeof(path), "%s/ca-server.crt", pki);
	snprintf(key, sizeof(key), "%s/ca-server.key", pki);
	if (SSL_CTX_use_certificate_chain_file(ctx, path) != 1 ||
	    SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)
		goto fail;
	for (int i = 0; i < ntrust; i++)
		if (SSL_CTX_load_verify_locations(ctx, trust[i], NULL) != 1)
			goto fail;
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
			   NULL);
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	event_base_loopbreak(arg);
}

static int write_port(const char *file, unsigned port)
{
	char tmp[4096];
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s.tmp", file);
	f = fopen(tmp, "w");
	if (!f)
		return -errno;
	fprintf(f, "%u\n", port);
	fclose(f);
	return rename(tmp, file) == 0 ? 0 : -errno;
}

static unsigned bound_port(struct evhttp_bound_socket *bs)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);

	if (getsockname(evhttp_bound_socket_get_fd(bs), (struct sockaddr *)&ss,
			&sl) != 0)
		return 0;
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static int usage(void)
{
	fprintf(stderr, "usage: fast-ca --pki DIR [--host H] [--port N] "
			"[--port-file F] [--client-trust PEM]...\n");
	return 2;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "pki", required_argument, NULL, 'k' },
		{ "host", required_argument, NULL, 'h' },
		{ "port", required_argument, NULL, 'p' },
		{ "port-file", required_argument, NULL, 'f' },
		{ "client-trust", required_argument, NULL, 't' },
		{ NULL, 0, NULL, 0 },
	};
	const char *pki = NULL, *host = "127.0.0.1", *port_file = NULL;
	char *trust[8], deft[2][4096];
	int ntrust = 0, port = 0, c, rc = 1;
	struct ca ca = { 0 };
	struct event_base *base = NULL;
	struct evhttp *http = NULL;
	struct evhttp_bound_socket *bs;
	struct event *sigs[2] = { NULL, NULL };

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'k': pki = optarg; break;
		case 'h': host = optarg; break;
		case 'p': port = atoi(optarg); break;
		case 'f': port_file = optarg; break;
		case 't':
			if (ntrust == 8)
				return usage();
			trust[ntrust++] = optarg;
			break;
		default: return usage();
		}
	}
	if (!pki)
		return usage();
	if (ntrust == 0) {
		snprintf(deft[0], sizeof(deft[0]), "%s/est-root.crt", pki);
		snprintf(deft[1], sizeof(deft[1]), "%s/est-sub.crt", pki);
		trust[0] = deft[0];
		trust[1] = deft[1];
		ntrust = 2;
	}
	signal(SIGPIPE, SIG_IGN);
	ca.sub = read_cert(pki, "est-sub.crt");
	ca.root = read_cert(pki, "est-root.crt");
	ca.sub_key = read_key(pki, "est-sub.key");
	ca.tls = make_tls(pki, trust, ntrust);
	if (!ca.sub || !ca.root || !ca.sub_key || !ca.tls) {
		fprintf(stderr, "fast-ca: cannot load the PKI from %s\n", pki);
		goto out;
	}
	ca.cacerts_b64 = certs_only_b64((X509 *[]){ ca.root, ca.sub }, 2);
	base = event_base_new();
	http = base ? evhttp_new(base) : NULL;
	if (!ca.cacerts_b64 || !http)
		goto out;
	evhttp_set_bevcb(http, on_conn, &ca);
	evhttp_set_gencb(http, on_request, &ca);
	evhttp_set_max_body_size(http, MAX_BODY);
	evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_POST);
	evhttp_set_timeout(http, 60);
	bs = evhttp_bind_socket_with_handle(http, host, (ev_uint16_t)port);
	if (!bs) {
		fprintf(stderr, "fast-ca: cannot listen on %s:%d\n", host, port);
		goto out;
	}
	if (port_file && write_port(port_file, bound_port(bs)) != 0)
		goto out;
	fprintf(stderr, "fast-ca: listening on %s:%u\n", host, bound_port(bs));
	sigs[0] = evsignal_new(base, SIGTERM, on_signal, base);
	sigs[1] = evsignal_new(base, SIGINT, on_signal, base);
	if (!sigs[0] || !sigs[1] || event_add(sigs[0], NULL) || event_add(sigs[1], NULL))
		goto out;
	event_base_dispatch(base);
	fprintf(stderr, "fast-ca: %lu requests, %lu certificates issued\n",
		ca.requests, ca.issued);
	rc = 0;
out:
	for (int i = 0; i < 2; i++)
		if (sigs[i])
			event_free(sigs[i]);
	if (http)
		evhttp_free(http);
	if (base)
		event_base_free(base);
	free(ca.cacerts_b64);
	SSL_CTX_free(ca.tls);
	X509_free(ca.sub);
	X509_free(ca.root);
	EVP_PKEY_free(ca.sub_key);
	return rc;
}
