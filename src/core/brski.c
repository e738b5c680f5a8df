/* brski.c - the constrained BRSKI Registrar pipeline (H1-H5 in
 * docs/conformance.md).
 *
 * rv: PVR checks (COSE_Sign1 verified with the DTLS client certificate's
 * key, proximity, serial-number, nonce) -> RVR built and signed with the
 * registrar key -> POST to the MASA (one exchange per PVR hash) -> voucher
 * with its unprotected header stripped, 2.04 CF 836. vs/es: validated,
 * logged, counted; never sent upstream (H3).
 */
#include "core/brski.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pki/brski_pki.h"
#include "estgw/cose.h"
#include "estgw/log.h"
#include "estgw/masa.h"
#include "estgw/translate.h"
#include "estgw/voucher.h"
#include "ops/metrics.h"
#include "upstream/upstream.h"

#define KEEP_VOUCHER 60     /* seconds a delivered voucher is kept for resends */
#define MAX_KEPT 256        /* MASA answers kept (202 / voucher) */
#define ENROLLED_MAX 256    /* enrolled certificate hashes kept for es */
#define NONCE_MIN 8         /* RFC 8366bis nonce length */
#define NONCE_MAX 32
#define SERIAL_MAX 64
#define BAG_HALF (COSE_MAX_BAG / 2)

/* brski.c's part of one MASA exchange (the engine's data). */
struct masa_job {
	struct brski *b;
	uint8_t nonce[NONCE_MAX];
	size_t nonce_len;
	char serial[SERIAL_MAX + 1];
	struct proxy_outcome out; /* the mapped answer: each waiter gets a copy */
};

/* A manufacturer line, loaded. Its CAs only fill the RVR's x5bag: which
 * line an IDevID belongs to is the DTLS verifier's answer
 * (brski_request.mfr), never checked again here. */
struct mfr {
	const struct estgw_brski_mfr *cfg;
	struct brski_trust *ca;
};

struct brski {
	struct event_base *base;
	const struct store_if *store; /* [cluster] telemetry stream, or NULL */
	const struct estgw_config *cfg;
	struct est_xlate_limits lim;
	struct xchg_engine *xe;
	struct brski_signer *signer;
	struct brski_trust *mfr_trust;
	struct mfr mfrs[ESTGW_MAX_MFR];
	size_t nmfr;
	struct est_slice *chain;   /* our registrar chain (x5bag) */
	size_t nchain;
	struct est_slice server_spki;
	uint8_t server_spki_hash[32];
	uint8_t enrolled[ENROLLED_MAX][32];
	size_t nenrolled, enrolled_next;
	struct brski_stats stats;
};

/* ---- answers ----------------------------------------------------------- */

static enum proxy_rc answer(struct proxy_outcome *o, uint8_t code, const char *diag,
			    long status)
{
	memset(o, 0, sizeof(*o));
	o->upstream_status = status;
	snprintf(o->note, sizeof(o->note), "%.120s", diag ? diag : "");
	est_coap_resp_error(&o->resp, code, diag); /* without memory: no text */
	return PROXY_ANSWERED;
}

/* Copy an outcome (each waiter owns its payload). */
static int outcome_copy(struct proxy_outcome *dst, const struct proxy_outcome *src)
{
	*dst = *src;
	dst->resp.payload = NULL;
	if (src->resp.len) {
		dst->resp.payload = malloc(src->resp.len + 1);
		if (!dst->resp.payload)
			return -ENOMEM;
		memcpy(dst->resp.payload, src->resp.payload, src->resp.len);
		dst->resp.payload[src->resp.len] = '\0';
	}
	return 0;
}

/* ---- the MASA exchange on the engine (H5) ------------------------------- */

static void job_free(void *data)
{
	struct masa_job *j = data;

	est_coap_resp_free(&j->out.resp);
	free(j);
}

static struct est_http_resp http_resp(const struct upstream_result *r)
{
	struct est_http_resp in = {
		.err = r->err,
		.status = r->status,
		.content_type = r->content_type,
		.retry_after = r->retry_after,
		.body = r->body,
		.body_len = r->body_len,
		.now = time(NULL),
	};
	return in;
}

/* The note for the log line: the voucher's serial, or the diagnostic. */
static void outcome_note(struct proxy_outcome *o, enum masa_kind kind, const char *serial)
{
	if (kind == MASA_VOUCHER)
		snprintf(o->note, sizeof(o->note), "voucher for %s", serial);
	else
		snprintf(o->note, sizeof(o->note), "%.120s",
			 o->resp.payload ? (const char *)o->resp.payload : "");
}

/* The MASA answer's result label for /metrics. */
static const char *masa_result(enum masa_kind kind, const struct upstream_result *r)
{
	if (kind == MASA_VOUCHER)
		return "voucher";
	if (kind == MASA_PENDING)
		return "pending";
	if (r->err == EST_UP_OK && r->status >= 400 && r->status < 500)
		return "refused";
	return "error";
}

/* The engine's answered hook: map once (masa.c's table), count, log, and
 * keep a voucher or a 202 for resends of the same PVR. */
static void on_answered(struct xchg *ex, const struct upstream_result *r)
{
	struct masa_job *j = xchg_data(ex);
	struct brski *b = j->b;
	struct est_http_resp in = http_resp(r);
	struct masa_expect x = { j->nonce, j->nonce_len, j->serial };
	struct proxy_outcome *o = &j->out;
	enum masa_kind kind = masa_translate(&in, r->errmsg, &x, &b->lim, &o->resp);

	o->upstream_status = r->err == EST_UP_OK ? r->status : 0;
	outcome_note(o, kind, j->serial);
	metrics_upstream("requestvoucher", r->err, r->status, r->seconds);
	metrics_brski_masa(masa_result(kind, r));
	if (EST_CODE_CLASS(o->resp.code) == 2)
		b->stats.rv_voucher++;
	else
		b->stats.rv_masa_error++;
	log_info("brski", "MASA answer for serial \"%s\": %s%ld -> %d.%02d (%s)", j->serial,
		 r->err == EST_UP_OK ? "HTTP " : "no answer ", r->err == EST_UP_OK ? r->status : 0L,
		 EST_CODE_CLASS(o->resp.code), EST_CODE_DETAIL(o->resp.code), o->note);
	if (kind == MASA_VOUCHER)
		xchg_keep(b->xe, xchg_key(ex), r, KEEP_VOUCHER);
	else if (kind == MASA_PENDING) /* resends get 5.03 until then */
		xchg_keep(b->xe, xchg_key(ex), r, o->resp.max_age);
	/* errors are not kept: a resend asks again */
}

/* The engine's outcome hook: every waiter gets its copy. */
static void on_outcome(struct xchg *ex, int param, const struct upstream_result *r,
		       struct proxy_outcome *out)
{
	struct masa_job *j = xchg_data(ex);

	if (outcome_copy(out, &j->out) != 0)
		answer(out, EST_CODE(5, 0), "out of memory", j->out.upstream_status);
}

static const struct xchg_hooks masa_hooks = { on_answered, on_outcome, job_free };

/* ---- the PVR checks (H2) ---------------------------------------------- */

/* Our DTLS server key named by the PVR? sha256, pubk, cert in that order. */
static int proximity_ok(const struct brski *b, const struct vr_fields *f)
{
	if (f->prox_sha256.ptr)
		return f->prox_sha256.len == 32 &&
		       memcmp(f->prox_sha256.ptr, b->server_spki_hash, 32) == 0;
	if (f->prox_pubk.ptr)
		return f->prox_pubk.len == b->server_spki.len &&
		       memcmp(f->prox_pubk.ptr, b->server_spki.ptr, b->server_spki.len) == 0;
	if (f->prox_cert.ptr)
		return b->nchain && f->prox_cert.len == b->chain[0].len &&
		       memcmp(f->prox_cert.ptr, b->chain[0].ptr, b->chain[0].len) == 0;
	return 0;
}

/* What the MASA request needs, gathered from the checks. */
struct rv_ctx {
	struct cose_sign1 pvr;
	struct vr_fields f;
	struct est_slice serial;      /* from the IDevID */
	struct est_slice issuer;      /* idevid-issuer bytes */
	uint8_t issuer_buf[32];
	const struct estgw_brski_mfr *mfr;   /* its manufacturer line, or NULL */
	const struct brski_trust *issuers;   /* the CAs that issued the IDevID */
	char url[512];
};

/* Each check answers at once with a precise code when it fails: 1 (or
 * -ENOMEM) then; 0 when the request may go on. */

/* Options and the client certificate (H1, H5). */
static int check_request(struct brski *b, const struct brski_request *rq,
			 struct rv_ctx *c, struct proxy_outcome *now)
{
	if (rq->cf != BRSKI_CF_VOUCHER_COSE)
		return answer(now, EST_CODE(4, 15), "rv takes Content-Format 836 (application/voucher+cose)", 0);
	if (rq->accept != EST_CF_NONE && rq->accept != BRSKI_CF_VOUCHER_COSE)
		return answer(now, EST_CODE(4, 6), "rv answers only Content-Format 836", 0);
	if (!rq->peer)
		return answer(now, EST_CODE(4, 1), "no client certificate", 0);
	if (rq->cert_expired) /* G3: an expired IDevID may only use sen */
		return answer(now, EST_CODE(4, 3), "an expired IDevID may only enroll (sen)", 0);
	/* the DTLS verifier decided which line the IDevID chains to */
	if (rq->mfr >= 0 && (size_t)rq->mfr < b->nmfr) {
		c->mfr = b->mfrs[rq->mfr].cfg;
		c->issuers = b->mfrs[rq->mfr].ca;
	} else if (rq->mfr == BRSKI_MFR_GENERIC) {
		c->mfr = NULL;
		c->issuers = b->mfr_trust;
	} else {
		return answer(now, EST_CODE(4, 3), "client certificate is not an IDevID of a configured manufacturer", 0);
	}
	return 0;
}

/* The COSE_Sign1, verified with the DTLS client certificate's key. */
static int check_signature(const struct brski_request *rq, struct rv_ctx *c,
			   struct proxy_outcome *now)
{
	char diag[96];
	int rc = cose_sign1_parse(rq->body, rq->len, &c->pvr);

	if (rc != 0) {
		snprintf(diag, sizeof(diag), "PVR is not a COSE_Sign1 (%s)", rc == -ENOTSUP ?
			 "unsupported form" : rc == -E2BIG ? "too many certificates" : "malformed");
		return answer(now, EST_CODE(4, 0), diag, 0);
	}
	rc = brski_cose_verify(&c->pvr, rq->peer, rq->peer_len);
	if (rc == -ENOTSUP)
		return answer(now, EST_CODE(4, 3), "PVR: only ES256 with a P-256 IDevID is supported", 0);
	if (rc != 0)
		return answer(now, EST_CODE(4, 3), "PVR signature does not verify with the client certificate", 0);
	return 0;
}

/* The voucher-request leaves against our certificate and the IDevID. */
static int check_fields(struct brski *b, const struct brski_request *rq,
			struct rv_ctx *c, struct proxy_outcome *now)
{
	const struct vr_fields *f = &c->f;

	if (vr_decode(c->pvr.payload.ptr, c->pvr.payload.len, VR_REQUEST, &c->f) != 0)
		return answer(now, EST_CODE(4, 0), "PVR payload is not a voucher-request", 0);
	if (f->assertion != VR_ASSERT_PROXIMITY)
		return answer(now, EST_CODE(4, 0), "PVR assertion must be proximity", 0);
	if (!proximity_ok(b, f))
		return answer(now, EST_CODE(4, 1), "PVR does not pin this registrar's certificate", 0);
	if (idevid_serial(rq->peer, rq->peer_len, &c->serial) != 0 || c->serial.len == 0 ||
	    c->serial.len > SERIAL_MAX)
		return answer(now, EST_CODE(4, 3), "IDevID has no usable serialNumber", 0);
	if (!f->serial.ptr || f->serial.len != c->serial.len ||
	    memcmp(f->serial.ptr, c->serial.ptr, c->serial.len) != 0)
		return answer(now, EST_CODE(4, 0), "PVR serial-number differs from the IDevID's", 0);
	if (!f->nonce.ptr)
		return answer(now, EST_CODE(4, 0), "PVR has no nonce (nonceless vouchers are not supported)", 0);
	if (f->nonce.len < NONCE_MIN || f->nonce.len > NONCE_MAX)
		return answer(now, EST_CODE(4, 0), "PVR nonce must be 8 to 32 bytes", 0);
	if (idevid_issuer(rq->peer, rq->peer_len, &c->issuer) != 0) {
		uint8_t keyid[20];
		size_t n;
		if (brski_cert_keyid(rq->peer, rq->peer_len, keyid) != 0 ||
		    idevid_issuer_from_keyid(keyid, 20, c->issuer_buf, sizeof(c->issuer_buf), &n) != 0)
			return answer(now, EST_CODE(4, 0), "IDevID key unreadable", 0);
		c->issuer = (struct est_slice){ c->issuer_buf, n };
	}
	return 0;
}

/* The manufacturer line's URL, [brski] masa_url, or the IDevID's. */
static int pick_masa_url(const struct brski *b, const struct brski_request *rq,
			 struct rv_ctx *c, struct proxy_outcome *now)
{
	const char *fixed = c->mfr && c->mfr->masa_url ? c->mfr->masa_url : b->cfg->brski.masa_url;
	struct est_slice url;
	int rc;

	if (fixed)
		rc = masa_request_url(fixed, strlen(fixed), c->url, sizeof(c->url));
	else if ((rc = idevid_masa_url(rq->peer, rq->peer_len, &url)) == 0)
		rc = masa_request_url((const char *)url.ptr, url.len, c->url, sizeof(c->url));
	if (rc != 0)
		return answer(now, EST_CODE(4, 4), "no usable MASA URL for this IDevID", 0);
	return 0;
}

static int check_pvr(struct brski *b, const struct brski_request *rq,
		     struct rv_ctx *c, struct proxy_outcome *now)
{
	int rc;

	if ((rc = check_request(b, rq, c, now)) != 0 ||
	    (rc = check_signature(rq, c, now)) != 0 ||
	    (rc = check_fields(b, rq, c, now)) != 0)
		return rc;
	return pick_masa_url(b, rq, c, now);
}

/* ---- the RVR and the MASA request -------------------------------------- */

static int build_rvr(struct brski *b, const struct brski_request *rq,
		     const struct rv_ctx *c, uint8_t **out, size_t *len)
{
	struct est_slice bag[COSE_MAX_BAG];
	size_t n = 0;
	char now[32];
	time_t t = time(NULL);
	struct tm tm;
	uint8_t *payload;
	size_t plen;
	int rc;

	strftime(now, sizeof(now), "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t, &tm));
	struct rvr_in in = {
		.assertion = c->f.assertion,
		.created_on = now,
		.idevid_issuer = c->issuer,
		.nonce = c->f.nonce,
		.prior_signed = { rq->body, rq->len },
		.serial = c->serial,
	};
	if ((rc = vr_encode_rvr(&in, &payload, &plen)) != 0)
		return rc;
	/* x5bag: our chain (pinned by the MASA), then the pledge's (CV -30) */
	for (size_t i = 0; i < b->nchain && n < BAG_HALF; i++)
		bag[n++] = b->chain[i];
	bag[n++] = (struct est_slice){ rq->peer, rq->peer_len };
	n += brski_trust_chain(c->issuers, rq->peer, rq->peer_len, bag + n,
			       COSE_MAX_BAG - n);
	struct est_slice pl = { payload, plen };
	rc = brski_cose_sign(b->signer, &pl, bag, n, out, len);
	free(payload);
	return rc;
}

/* The MASA request: POST the RVR with the manufacturer line's TLS
 * settings, or [brski]'s. */
static void masa_request(const struct brski *b, const struct rv_ctx *c, struct xchg *ex)
{
	const struct estgw_config *cfg = b->cfg;
	const struct estgw_brski_mfr *m = c->mfr;
	int legacy = (m && m->legacy) || cfg->brski.legacy_media_type;
	struct upstream_opts o = {
		.trust = m && m->trust ? m->trust : cfg->brski.masa_trust,
		.certificate = m && m->certificate ? m->certificate :
			       cfg->brski.masa_certificate ? cfg->brski.masa_certificate :
			       cfg->server.certificate,
		.private_key = m && m->private_key ? m->private_key :
			       cfg->brski.masa_private_key ? cfg->brski.masa_private_key :
			       cfg->server.private_key,
		.accept = legacy ? MASA_MT_VOUCHER_LEGACY : MASA_MT_VOUCHER,
		.timeout = cfg->brski.masa_timeout,
	};
	struct est_http_req *req = xchg_request(ex);

	req->method = EST_POST;
	req->content_type = legacy ? MASA_MT_VOUCHER_LEGACY : MASA_MT_VOUCHER;
	xchg_set_opts(ex, &o);
}

/* A resend of a PVR whose MASA answer is kept: the voucher again, or 5.03
 * with the time left of the MASA's 202. */
static enum proxy_rc kept_answer(struct brski *b, const struct xchg_kept *k,
				 const struct rv_ctx *c, struct proxy_outcome *now)
{
	struct est_http_resp in = {
		.err = EST_UP_OK, .status = k->status, .content_type = k->content_type,
		.body = k->body, .body_len = k->len, .now = xchg_now(b->xe),
	};
	char serial[SERIAL_MAX + 1];
	struct masa_expect x = { c->f.nonce.ptr, c->f.nonce.len, serial };
	time_t left = k->expires - in.now;

	b->stats.rv_joined++;
	metrics_brski_request("rv", "kept");
	snprintf(serial, sizeof(serial), "%.*s", (int)c->serial.len, (const char *)c->serial.ptr);
	memset(now, 0, sizeof(*now));
	now->upstream_status = k->status;
	if (masa_translate(&in, NULL, &x, &b->lim, &now->resp) == MASA_PENDING) {
		now->resp.max_age = left > 0 ? (uint32_t)left : 0;
		snprintf(now->note, sizeof(now->note), "waiting for the MASA (202 kept)");
	} else {
		snprintf(now->note, sizeof(now->note), "voucher kept for this PVR");
	}
	return PROXY_ANSWERED;
}

/* A new MASA exchange for @p key: the RVR built and signed, sent (or
 * queued: never, max_queued is 0). NULL with *now filled when it cannot. */
static struct xchg *masa_start(struct brski *b, const struct brski_request *rq,
			       const struct rv_ctx *c, const uint8_t *key,
			       struct proxy_outcome *now)
{
	struct masa_job *j;
	struct xchg *ex;
	uint8_t *rvr;
	size_t rvr_len;
	int rc;

	if (!xchg_room(b->xe)) {
		metrics_brski_request("rv", "busy");
		answer(now, EST_CODE(5, 3), "registrar busy", 0);
		now->resp.has_max_age = 1;
		now->resp.max_age = b->cfg->upstream.retry_default;
		return NULL;
	}
	if (build_rvr(b, rq, c, &rvr, &rvr_len) != 0) {
		metrics_brski_request("rv", "error");
		answer(now, EST_CODE(5, 0), "cannot build the registrar voucher request", 0);
		return NULL;
	}
	j = calloc(1, sizeof(*j));
	ex = j ? xchg_new(b->xe, key, j, "MASA voucher request") : NULL;
	if (!ex || !(xchg_request(ex)->url = strdup(c->url))) {
		if (ex)
			xchg_abort(ex);
		else
			free(j);
		free(rvr);
		metrics_brski_request("rv", "error");
		answer(now, EST_CODE(5, 0), "out of memory", 0);
		return NULL;
	}
	j->b = b;
	memcpy(j->nonce, c->f.nonce.ptr, c->f.nonce.len);
	j->nonce_len = c->f.nonce.len;
	memcpy(j->serial, c->serial.ptr, c->serial.len);
	xchg_request(ex)->body = (char *)rvr; /* the exchange owns it now */
	xchg_request(ex)->body_len = rvr_len;
	masa_request(b, c, ex);
	rc = xchg_place(ex);
	if (rc != 0) {
		metrics_brski_request("rv", "error");
		answer(now, EST_CODE(5, 2), "cannot start the MASA request", 0);
		return NULL;
	}
	metrics_brski_request("rv", "sent");
	log_info("brski", "RVR for serial \"%s\" (%zu bytes) to %s", j->serial, rvr_len, c->url);
	return ex;
}

static enum proxy_rc handle_rv(struct brski *b, const struct brski_request *rq,
			       proxy_done_fn fn, void *arg, struct xchg_wait **wait,
			       struct proxy_outcome *now)
{
	const struct xchg_kept *k;
	struct rv_ctx c;
	uint8_t key[XCHG_KEY_LEN];
	struct xchg *ex;

	b->stats.rv++;
	memset(&c, 0, sizeof(c));
	if (check_pvr(b, rq, &c, now) != 0) {
		b->stats.rv_rejected++;
		metrics_brski_request("rv", "refused");
		return PROXY_ANSWERED;
	}
	brski_sha256(rq->body, rq->len, key);
	if ((k = xchg_kept_find(b->xe, key)))
		return kept_answer(b, k, &c, now);
	if ((ex = xchg_find(b->xe, key))) { /* the same PVR is at the MASA already */
		b->stats.rv_joined++;
		metrics_brski_request("rv", "joined");
	} else if (!(ex = masa_start(b, rq, &c, key, now)))
		return PROXY_ANSWERED;
	*wait = xchg_wait(ex, 0, fn, arg);
	if (!*wait)
		return answer(now, EST_CODE(5, 0), "out of memory", 0);
	return PROXY_PENDING;
}

/* ---- vs / es (H3) ------------------------------------------------------- */

static int is_enrolled(const struct brski *b, const uint8_t *der, size_t len)
{
	uint8_t h[32];

	brski_sha256(der, len, h);
	for (size_t i = 0; i < b->nenrolled; i++)
		if (memcmp(b->enrolled[i], h, 32) == 0)
			return 1;
	return 0;
}

void brski_note_enrolled(struct brski *b, int cf, const uint8_t *payload,
			 size_t len)
{
	struct est_slice certs[EST_PKCS7_MAX_CERTS];
	size_t n = 0;

	if (!b || !payload)
		return;
	if (cf == EST_CF_PKIX_CERT) {
		certs[0] = (struct est_slice){ payload, len };
		n = 1;
	} else if (cf != EST_CF_PKCS7_CERTS ||
		   est_pkcs7_certs(payload, len, certs, EST_PKCS7_MAX_CERTS, &n) != 0) {
		return;
	}
	for (size_t i = 0; i < n; i++) {
		brski_sha256(certs[i].ptr, certs[i].len, b->enrolled[b->enrolled_next]);
		b->enrolled_next = (b->enrolled_next + 1) % ENROLLED_MAX;
		if (b->nenrolled < ENROLLED_MAX)
			b->nenrolled++;
	}
}

/* The vs/es record on the cluster's stream, for an operator reading all
 * instances in one place (XRANGE / XREAD on [cluster] prefix + "brski"). */
static void share_status(struct brski *b, const struct brski_request *rq,
			 const char *what, const char *serial, int ok,
			 const char *reason)
{
	const char *f[] = { "kind", what, "serial", serial, "session",
			    rq->session ? rq->session : "-", "status",
			    ok ? "success" : "failure", "reason", reason };

	if (b->store)
		b->store->ops->telemetry(b->store->s, f, sizeof(f) / sizeof(f[0]));
}

void brski_set_store(struct brski *b, const struct store_if *st)
{
	b->store = st;
}

static enum proxy_rc handle_status(struct brski *b, const struct brski_request *rq,
				   struct proxy_outcome *now)
{
	const char *what = rq->res == BRSKI_VS ? "vs" : "es";
	struct brski_status st;
	struct est_slice ser = { 0 };
	char serial[65] = "-", reason[128] = "", diag[96];

	if (rq->cf != BRSKI_CF_CBOR && rq->cf != BRSKI_CF_JSON) {
		metrics_brski_request(what, "refused");
		snprintf(diag, sizeof(diag), "%s takes Content-Format 60 (application/cbor) or 50 (JSON)", what);
		return answer(now, EST_CODE(4, 15), diag, 0);
	}
	if ((rq->cf == BRSKI_CF_CBOR ? brski_status_decode(rq->body, rq->len, &st) :
	     brski_status_decode_json(rq->body, rq->len, &st)) != 0) {
		b->stats.bad_status++;
		metrics_brski_request(what, "refused");
		snprintf(diag, sizeof(diag), "%s: not a status map {version, status[, reason]}", what);
		return answer(now, EST_CODE(4, 0), diag, 0);
	}
	if (rq->peer && idevid_serial(rq->peer, rq->peer_len, &ser) == 0)
		est_printable(serial, sizeof(serial), ser.ptr, ser.len);
	if (st.reason.ptr)
		est_printable(reason, sizeof(reason), st.reason.ptr, st.reason.len);
	if (st.version > 1)
		log_warn("brski", "%s from serial \"%s\": telemetry version %llu is newer than 1: "
			 "check the pledge's firmware", what, serial, (unsigned long long)st.version);
	metrics_brski_request(what, st.status ? "success" : "failure");
	if (rq->res == BRSKI_VS) {
		st.status ? b->stats.vs_ok++ : b->stats.vs_fail++;
		log_info("brski", "vs serial=\"%s\" session=%s status=%s reason=\"%s\"", serial,
			 rq->session, st.status ? "success" : "failure", reason);
	} else {
		int enrolled = rq->peer && is_enrolled(b, rq->peer, rq->peer_len);
		st.status ? b->stats.es_ok++ : b->stats.es_fail++;
		log_info("brski", "es serial=\"%s\" session=%s status=%s reason=\"%s\" "
			 "client_cert=%s", serial, rq->session, st.status ? "success" : "failure",
			 reason, enrolled ? "enrolled-ldevid" : "not-the-enrolled-cert");
	}
	share_status(b, rq, what, serial, st.status, reason);
	memset(now, 0, sizeof(*now));
	now->resp.code = EST_CODE(2, 4);
	now->resp.cf = EST_CF_NONE;
	snprintf(now->note, sizeof(now->note), "%s status=%s", what, st.status ? "success" : "failure");
	return PROXY_ANSWERED;
}

/* ---- entry points ------------------------------------------------------- */

enum brski_res brski_route(const struct est_slice *segs, size_t nseg)
{
	static const char *const names[] = { "rv", "vs", "es" };

	if (nseg != 3 || segs[0].len != 11 || memcmp(segs[0].ptr, ".well-known", 11) != 0 ||
	    segs[1].len != 5 || memcmp(segs[1].ptr, "brski", 5) != 0 || segs[2].len != 2)
		return BRSKI_NONE;
	for (int i = 0; i < 3; i++)
		if (memcmp(segs[2].ptr, names[i], 2) == 0)
			return (enum brski_res)i;
	return BRSKI_NONE;
}

enum proxy_rc brski_submit(struct brski *b, const struct brski_request *rq,
			   proxy_done_fn fn, void *arg, struct xchg_wait **wait,
			   struct proxy_outcome *now)
{
	static const char *const names[] = { "rv", "vs", "es" };

	*wait = NULL;
	if (rq->method != EST_POST) {
		metrics_brski_request(rq->res >= BRSKI_RV && rq->res <= BRSKI_ES ?
				      names[rq->res] : "other", "refused");
		return answer(now, EST_CODE(4, 5), "only POST", 0);
	}
	if (rq->res == BRSKI_RV)
		return handle_rv(b, rq, fn, arg, wait, now);
	return handle_status(b, rq, now);
}

void brski_cancel(struct xchg_wait *w)
{
	xchg_cancel(w);
}

const struct brski_stats *brski_get_stats(const struct brski *b)
{
	return &b->stats;
}

/* The engine's limits: [brski] max_pending MASA exchanges at once and no
 * queue (the pledge gets 5.03 + Max-Age), no answer_within deadline (the
 * pledge waits for the MASA, up to masa_timeout). */
static void engine_limits(const struct estgw_config *cfg, struct xchg_limits *l)
{
	memset(l, 0, sizeof(*l));
	l->max_running = cfg->brski.max_pending;
	l->max_queued = 0;
	l->answer_within_ms = 0;
	l->timeout = cfg->brski.masa_timeout;
	l->age.max_age_default = cfg->upstream.retry_default;
	l->age.max_age_min = cfg->upstream.max_age_min;
	l->age.max_age_max = cfg->upstream.max_age_max;
	l->max_kept = MAX_KEPT;
}

struct brski *brski_new(struct event_base *base, struct upstream *up,
			const struct estgw_config *cfg)
{
	struct brski *b = calloc(1, sizeof(*b));
	struct xchg_transport t = { upstream_send_opts, upstream_cancel, up };
	struct xchg_limits l;
	char why[200];

	if (!b)
		return NULL;
	b->base = base;
	b->cfg = cfg;
	engine_limits(cfg, &l);
	b->lim = l.age;
	b->xe = xchg_engine_new(base, &t, &masa_hooks, &l);
	b->signer = brski_signer_new(cfg->server.private_key, why, sizeof(why));
	b->mfr_trust = brski_trust_load(cfg->brski.manufacturer_trust);
	if (!b->xe || !b->signer || !b->mfr_trust ||
	    brski_certs_load(cfg->server.certificate, &b->chain, &b->nchain) != 0 ||
	    est_cert_spki(b->chain[0].ptr, b->chain[0].len, &b->server_spki) != 0) {
		log_err("brski", "cannot load the registrar key, chain or manufacturer trust%s%s",
			b->signer ? "" : ": ", b->signer ? "" : why);
		brski_free(b);
		return NULL;
	}
	brski_sha256(b->server_spki.ptr, b->server_spki.len, b->server_spki_hash);
	for (size_t i = 0; i < cfg->brski.nmfr; i++) {
		b->mfrs[i].cfg = &cfg->brski.mfr[i];
		b->mfrs[i].ca = brski_trust_load(cfg->brski.mfr[i].ca);
		b->nmfr = i + 1;
		if (!b->mfrs[i].ca) {
			log_err("brski", "cannot load manufacturer CA %s", cfg->brski.mfr[i].ca);
			brski_free(b);
			return NULL;
		}
	}
	log_info("brski", "cBRSKI registrar on /.well-known/brski: %zu manufacturer line(s), "
		 "MASA %s", b->nmfr, cfg->brski.masa_url ? cfg->brski.masa_url : "from each IDevID");
	return b;
}

void brski_free(struct brski *b)
{
	if (!b)
		return;
	xchg_engine_free(b->xe); /* cancels its MASA transfers */
	const struct brski_stats *s = &b->stats;
	if (b->signer)
		log_info("brski", "totals: rv=%llu vouchers=%llu rejected=%llu masa_errors=%llu "
			 "joined=%llu vs=%llu/%llu es=%llu/%llu (ok/fail) bad_status=%llu",
			 (unsigned long long)s->rv, (unsigned long long)s->rv_voucher,
			 (unsigned long long)s->rv_rejected, (unsigned long long)s->rv_masa_error,
			 (unsigned long long)s->rv_joined, (unsigned long long)s->vs_ok,
			 (unsigned long long)s->vs_fail, (unsigned long long)s->es_ok,
			 (unsigned long long)s->es_fail, (unsigned long long)s->bad_status);
	for (size_t i = 0; i < b->nmfr; i++)
		brski_trust_free(b->mfrs[i].ca);
	brski_certs_free(b->chain, b->nchain);
	brski_trust_free(b->mfr_trust);
	brski_signer_free(b->signer);
	free(b);
}
