/* brski.c - the constrained BRSKI Registrar pipeline (H1-H5 in
 * docs/conformance.md).
 *
 * rv: PVR checks (COSE_Sign1 verified with the DTLS client certificate's
 * key, proximity, serial-number, nonce) -> RVR built and signed with the
 * registrar key -> POST to the MASA (one exchange per PVR hash) -> voucher
 * with its unprotected header stripped, 2.04 CF 836. vs/es: validated,
 * logged, counted; never sent upstream (H3).
 */
#include "brski.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "brski_pki.h"
#include "estgw/cose.h"
#include "estgw/log.h"
#include "estgw/translate.h"
#include "estgw/voucher.h"
#include "upstream.h"

#define MT_NEW "application/voucher+cose"
#define MT_LEGACY "application/voucher-cose+cbor"
#define KEEP_VOUCHER 60     /* seconds a delivered voucher is kept for resends */
#define MAX_JOBS_KEPT 256   /* finished jobs kept (202 / voucher) */
#define ENROLLED_MAX 256    /* enrolled certificate hashes kept for es */
#define NONCE_MIN 8         /* RFC 8366bis nonce length */
#define NONCE_MAX 32
#define BAG_HALF (COSE_MAX_BAG / 2)

enum job_state {
	JOB_INFLIGHT, /* MASA exchange running */
	JOB_RETRY,    /* MASA said 202: resends get 5.03 until retry_at */
	JOB_DONE,     /* a voucher: resends get it again until keep_until */
};

struct brski_wait {
	struct masa_job *job;
	proxy_done_fn fn;
	void *arg;
	struct brski_wait *prev, *next;
};

struct masa_job {
	struct brski *b;
	uint8_t key[32];           /* SHA-256 of the PVR bytes */
	enum job_state state;
	struct upstream_xfer *xfer;
	struct brski_wait *waiters;
	time_t until;              /* retry_at or keep_until */
	struct proxy_outcome kept; /* JOB_DONE: the answer */
	uint8_t nonce[NONCE_MAX];
	size_t nonce_len;
	char serial[65];
	struct masa_job *prev, *next;
};

/* A manufacturer line, loaded. */
struct mfr {
	const struct estgw_brski_mfr *cfg;
	struct brski_trust *ca;
};

struct brski {
	struct event_base *base;
	struct upstream *up;
	const struct estgw_config *cfg;
	struct brski_signer *signer;
	struct brski_trust *mfr_trust;
	struct mfr mfrs[ESTGW_MAX_MFR];
	size_t nmfr;
	struct est_slice *chain;   /* our registrar chain (x5bag) */
	size_t nchain;
	struct est_slice server_spki;
	uint8_t server_spki_hash[32];
	struct masa_job *jobs;
	size_t njobs, inflight;
	uint8_t enrolled[ENROLLED_MAX][32];
	size_t nenrolled, enrolled_next;
	struct brski_stats stats;
};

/* ---- answers ----------------------------------------------------------- */

static int answer(struct proxy_outcome *o, uint8_t code, const char *diag,
		  long status)
{
	memset(o, 0, sizeof(*o));
	o->upstream_status = status;
	snprintf(o->note, sizeof(o->note), "%.120s", diag ? diag : "");
	return est_coap_resp_error(&o->resp, code, diag) == 0 ? 1 : -ENOMEM;
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

/* Printable ASCII copy of untrusted text for logs and diagnostics. */
static void clean_text(char *dst, size_t dstlen, const uint8_t *p, size_t n)
{
	size_t j = 0;

	for (size_t i = 0; i < n && j + 1 < dstlen; i++)
		dst[j++] = (p[i] >= 0x20 && p[i] < 0x7f && p[i] != '"') ? (char)p[i] : '?';
	dst[j] = '\0';
}

/* ---- jobs -------------------------------------------------------------- */

static void job_unlink(struct masa_job *j)
{
	struct brski *b = j->b;

	if (j->prev)
		j->prev->next = j->next;
	else
		b->jobs = j->next;
	if (j->next)
		j->next->prev = j->prev;
	b->njobs--;
}

static void job_free(struct masa_job *j)
{
	if (j->xfer) {
		upstream_cancel(j->xfer);
		j->b->inflight--;
	}
	while (j->waiters) {
		struct brski_wait *w = j->waiters;
		j->waiters = w->next;
		free(w);
	}
	est_coap_resp_free(&j->kept.resp);
	job_unlink(j);
	free(j);
}

/* Drop finished jobs whose time is up, and the oldest beyond the bound. */
static void jobs_expire(struct brski *b, time_t now)
{
	struct masa_job *j = b->jobs, *next, *oldest = NULL;

	for (; j; j = next) {
		next = j->next;
		if (j->state != JOB_INFLIGHT && now >= j->until)
			job_free(j);
	}
	while (b->njobs > MAX_JOBS_KEPT + b->inflight) {
		oldest = NULL;
		for (j = b->jobs; j; j = j->next)
			if (j->state != JOB_INFLIGHT && (!oldest || j->until < oldest->until))
				oldest = j;
		if (!oldest)
			break;
		job_free(oldest);
	}
}

static struct masa_job *job_find(struct brski *b, const uint8_t key[32])
{
	for (struct masa_job *j = b->jobs; j; j = j->next)
		if (memcmp(j->key, key, 32) == 0)
			return j;
	return NULL;
}

static int job_wait(struct masa_job *j, proxy_done_fn fn, void *arg,
		    struct brski_wait **wait)
{
	struct brski_wait *w = calloc(1, sizeof(*w));

	if (!w)
		return -ENOMEM;
	w->job = j;
	w->fn = fn;
	w->arg = arg;
	w->next = j->waiters;
	if (j->waiters)
		j->waiters->prev = w;
	j->waiters = w;
	*wait = w;
	return 0;
}

void brski_cancel(struct brski_wait *w)
{
	if (!w)
		return;
	if (w->prev)
		w->prev->next = w->next;
	else
		w->job->waiters = w->next;
	if (w->next)
		w->next->prev = w->prev;
	free(w);
}

/* Give every waiter its copy of @p o. */
static void job_finish(struct masa_job *j, const struct proxy_outcome *o)
{
	while (j->waiters) {
		struct brski_wait *w = j->waiters;
		struct proxy_outcome mine;
		j->waiters = w->next;
		if (j->waiters)
			j->waiters->prev = NULL;
		if (outcome_copy(&mine, o) != 0)
			answer(&mine, EST_CODE(5, 0), "out of memory", o->upstream_status);
		proxy_done_fn fn = w->fn;
		void *arg = w->arg;
		free(w);
		fn(arg, &mine);
	}
}

/* ---- the MASA answer (H5) --------------------------------------------- */

static int is_voucher_type(const char *ct)
{
	size_t n;

	if (!ct)
		return 0;
	n = strcspn(ct, "; \t");
	return (n == strlen(MT_NEW) && strncasecmp(ct, MT_NEW, n) == 0) ||
	       (n == strlen(MT_LEGACY) && strncasecmp(ct, MT_LEGACY, n) == 0);
}

/* A 200 answer: check the voucher against the request, strip it. */
static void voucher_answer(struct masa_job *j, const struct upstream_result *r,
			   struct proxy_outcome *o)
{
	struct cose_sign1 s;
	struct vr_fields f;
	uint8_t *out;
	size_t len;

	if (!is_voucher_type(r->content_type)) {
		answer(o, EST_CODE(5, 2), "MASA answer is not application/voucher+cose", r->status);
		return;
	}
	if (cose_sign1_parse(r->body, r->body_len, &s) != 0 ||
	    vr_decode(s.payload.ptr, s.payload.len, VR_VOUCHER, &f) != 0) {
		answer(o, EST_CODE(5, 2), "MASA answer is not a COSE-signed voucher", r->status);
		return;
	}
	if (!f.nonce.ptr || f.nonce.len != j->nonce_len ||
	    memcmp(f.nonce.ptr, j->nonce, j->nonce_len) != 0 || !f.serial.ptr ||
	    f.serial.len != strlen(j->serial) ||
	    memcmp(f.serial.ptr, j->serial, f.serial.len) != 0) {
		answer(o, EST_CODE(5, 2), "voucher nonce or serial-number does not match the request",
		       r->status);
		return;
	}
	if (cose_sign1_strip(r->body, r->body_len, &out, &len) != 0) {
		answer(o, EST_CODE(5, 0), "out of memory", r->status);
		return;
	}
	memset(o, 0, sizeof(*o));
	o->upstream_status = r->status;
	o->resp.code = EST_CODE(2, 4);
	o->resp.cf = BRSKI_CF_VOUCHER_COSE;
	o->resp.payload = out;
	o->resp.len = len;
	snprintf(o->note, sizeof(o->note), "voucher for %s", j->serial);
}

static uint32_t retry_seconds(const struct brski *b, const char *v)
{
	const struct estgw_config *c = b->cfg;
	uint32_t secs = c->upstream.retry_default;

	if (v && est_retry_after_seconds(v, time(NULL), &secs) != 0)
		secs = c->upstream.retry_default;
	if (secs < c->upstream.max_age_min)
		secs = c->upstream.max_age_min;
	if (secs > c->upstream.max_age_max)
		secs = c->upstream.max_age_max;
	return secs;
}

static void masa_error_answer(const struct upstream_result *r,
			      struct proxy_outcome *o)
{
	char text[160], diag[200];

	if (r->status >= 400 && r->status < 500) {
		/* MASA 4xx: same code, its text/plain reason (RFC 8995 5.6) */
		clean_text(text, sizeof(text), r->body, r->body_len);
		snprintf(diag, sizeof(diag), "MASA: %s", text[0] ? text : "refused");
		answer(o, est_status_to_code(r->status, EST_POST), diag, r->status);
	} else {
		snprintf(diag, sizeof(diag), "MASA answered HTTP %ld", r->status);
		answer(o, EST_CODE(5, 2), diag, r->status);
	}
}

static void on_masa(void *arg, const struct upstream_result *r)
{
	struct masa_job *j = arg;
	struct brski *b = j->b;
	struct proxy_outcome o;
	char diag[200];

	j->xfer = NULL;
	b->inflight--;
	if (r->err == EST_UP_TIMEOUT) {
		answer(&o, EST_CODE(5, 4), "MASA did not answer in time", 0);
	} else if (r->err != EST_UP_OK) {
		snprintf(diag, sizeof(diag), "MASA unreachable: %s", r->errmsg ? r->errmsg : "?");
		answer(&o, EST_CODE(5, 2), diag, 0);
	} else if (r->status == 200) {
		voucher_answer(j, r, &o);
	} else if (r->status == 202) {
		uint32_t secs = retry_seconds(b, r->retry_after);
		answer(&o, EST_CODE(5, 3), "MASA: voucher not ready, retry later", r->status);
		o.resp.has_max_age = 1;
		o.resp.max_age = secs;
		j->state = JOB_RETRY;
		j->until = time(NULL) + secs;
	} else {
		masa_error_answer(r, &o);
		if (est_status_has_max_age(r->status) && o.resp.code == EST_CODE(4, 29)) {
			/* RFC 8516: 4.29 with the MASA's Retry-After */
			o.resp.has_max_age = 1;
			o.resp.max_age = retry_seconds(b, r->retry_after);
		}
	}
	if (EST_CODE_CLASS(o.resp.code) == 2) {
		b->stats.rv_voucher++;
		j->state = JOB_DONE;
		j->until = time(NULL) + KEEP_VOUCHER;
	} else {
		b->stats.rv_masa_error++;
	}
	log_info("brski", "MASA answer for serial \"%s\": %s%ld -> %d.%02d (%s)", j->serial,
		 r->err == EST_UP_OK ? "HTTP " : "no answer ", r->err == EST_UP_OK ? r->status : 0L,
		 EST_CODE_CLASS(o.resp.code), EST_CODE_DETAIL(o.resp.code), o.note);
	job_finish(j, &o);
	if (j->state == JOB_DONE && EST_CODE_CLASS(o.resp.code) == 2) {
		j->kept = o; /* kept for resends of the same PVR */
		return;
	}
	est_coap_resp_free(&o.resp);
	if (j->state == JOB_INFLIGHT)
		job_free(j); /* errors are not kept: a resend asks again */
}

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

/* The manufacturer line whose CA issued this IDevID, or NULL. */
static const struct mfr *find_mfr(const struct brski *b, const uint8_t *der,
				  size_t len)
{
	for (size_t i = 0; i < b->nmfr; i++)
		if (brski_trust_verify(b->mfrs[i].ca, der, len) == 0)
			return &b->mfrs[i];
	return NULL;
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
	const struct mfr *m = find_mfr(b, rq->peer, rq->peer_len);
	c->mfr = m ? m->cfg : NULL;
	c->issuers = m ? m->ca : b->mfr_trust;
	if (!m && brski_trust_verify(b->mfr_trust, rq->peer, rq->peer_len) != 0)
		return answer(now, EST_CODE(4, 3), "client certificate is not an IDevID of a configured manufacturer", 0);
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
	    c->serial.len >= sizeof(((struct masa_job *)0)->serial))
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

static int masa_send(struct brski *b, struct masa_job *j, const struct rv_ctx *c,
		     uint8_t *rvr, size_t rvr_len)
{
	const struct estgw_config *cfg = b->cfg;
	const struct estgw_brski_mfr *m = c->mfr;
	int legacy = (m && m->legacy) || cfg->brski.legacy_media_type;
	struct est_http_req req = {
		.url = (char *)c->url,
		.method = EST_POST,
		.content_type = legacy ? MT_LEGACY : MT_NEW,
		.body = (char *)rvr,
		.body_len = rvr_len,
	};
	struct upstream_opts o = {
		.trust = m && m->trust ? m->trust : cfg->brski.masa_trust,
		.certificate = m && m->certificate ? m->certificate :
			       cfg->brski.masa_certificate ? cfg->brski.masa_certificate :
			       cfg->server.certificate,
		.private_key = m && m->private_key ? m->private_key :
			       cfg->brski.masa_private_key ? cfg->brski.masa_private_key :
			       cfg->server.private_key,
		.accept = legacy ? MT_LEGACY : MT_NEW,
		.timeout = cfg->brski.masa_timeout,
	};
	j->xfer = upstream_send_opts(b->up, &req, &o, on_masa, j);
	if (!j->xfer)
		return -EIO;
	b->inflight++;
	log_info("brski", "RVR for serial \"%s\" (%zu bytes) to %s", j->serial, rvr_len, c->url);
	return 0;
}

/* A resend of a PVR we know: join, 5.03 with the time left, or the voucher. */
static int known_job(struct brski *b, struct masa_job *j, proxy_done_fn fn,
		     void *arg, struct brski_wait **wait, struct proxy_outcome *now)
{
	b->stats.rv_joined++;
	if (j->state == JOB_INFLIGHT) {
		if (job_wait(j, fn, arg, wait) != 0)
			return answer(now, EST_CODE(5, 0), "out of memory", 0);
		return 0;
	}
	if (j->state == JOB_RETRY) {
		time_t left = j->until - time(NULL);
		answer(now, EST_CODE(5, 3), "MASA: voucher not ready, retry later", 202);
		now->resp.has_max_age = 1;
		now->resp.max_age = left > 0 ? (uint32_t)left : 0;
		snprintf(now->note, sizeof(now->note), "waiting for the MASA (202 kept)");
		return 1;
	}
	if (outcome_copy(now, &j->kept) != 0)
		return answer(now, EST_CODE(5, 0), "out of memory", 0);
	snprintf(now->note, sizeof(now->note), "voucher kept for this PVR");
	return 1;
}

static int handle_rv(struct brski *b, const struct brski_request *rq,
		     proxy_done_fn fn, void *arg, struct brski_wait **wait,
		     struct proxy_outcome *now)
{
	struct rv_ctx c;
	uint8_t key[32];
	uint8_t *rvr;
	size_t rvr_len;
	int rc;

	b->stats.rv++;
	memset(&c, 0, sizeof(c));
	if ((rc = check_pvr(b, rq, &c, now)) != 0) {
		b->stats.rv_rejected++;
		return rc;
	}
	jobs_expire(b, time(NULL));
	brski_sha256(rq->body, rq->len, key);
	struct masa_job *j = job_find(b, key);
	if (j)
		return known_job(b, j, fn, arg, wait, now);
	if (b->inflight >= b->cfg->brski.max_pending) {
		answer(now, EST_CODE(5, 3), "registrar busy", 0);
		now->resp.has_max_age = 1;
		now->resp.max_age = b->cfg->upstream.retry_default;
		return 1;
	}
	if ((rc = build_rvr(b, rq, &c, &rvr, &rvr_len)) != 0)
		return answer(now, EST_CODE(5, 0), "cannot build the registrar voucher request", 0);
	j = calloc(1, sizeof(*j));
	if (!j) {
		free(rvr);
		return answer(now, EST_CODE(5, 0), "out of memory", 0);
	}
	j->b = b;
	memcpy(j->key, key, 32);
	memcpy(j->nonce, c.f.nonce.ptr, c.f.nonce.len);
	j->nonce_len = c.f.nonce.len;
	memcpy(j->serial, c.serial.ptr, c.serial.len);
	j->next = b->jobs;
	if (b->jobs)
		b->jobs->prev = j;
	b->jobs = j;
	b->njobs++;
	rc = masa_send(b, j, &c, rvr, rvr_len);
	free(rvr); /* curl copied it */
	if (rc == 0)
		rc = job_wait(j, fn, arg, wait);
	if (rc != 0) {
		job_free(j);
		return answer(now, EST_CODE(5, 2), "cannot start the MASA request", 0);
	}
	return 0;
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

static int handle_status(struct brski *b, const struct brski_request *rq,
			 struct proxy_outcome *now)
{
	const char *what = rq->res == BRSKI_VS ? "vs" : "es";
	struct brski_status st;
	struct est_slice ser = { 0 };
	char serial[65] = "-", reason[128] = "", diag[96];

	if (rq->cf != BRSKI_CF_CBOR && rq->cf != BRSKI_CF_JSON) {
		snprintf(diag, sizeof(diag), "%s takes Content-Format 60 (application/cbor) or 50 (JSON)", what);
		return answer(now, EST_CODE(4, 15), diag, 0);
	}
	if ((rq->cf == BRSKI_CF_CBOR ? brski_status_decode(rq->body, rq->len, &st) :
	     brski_status_decode_json(rq->body, rq->len, &st)) != 0) {
		b->stats.bad_status++;
		snprintf(diag, sizeof(diag), "%s: not a status map {version, status[, reason]}", what);
		return answer(now, EST_CODE(4, 0), diag, 0);
	}
	if (rq->peer && idevid_serial(rq->peer, rq->peer_len, &ser) == 0)
		clean_text(serial, sizeof(serial), ser.ptr, ser.len);
	if (st.reason.ptr)
		clean_text(reason, sizeof(reason), st.reason.ptr, st.reason.len);
	if (st.version > 1)
		log_warn("brski", "%s from serial \"%s\": telemetry version %llu is newer than 1: "
			 "check the pledge's firmware", what, serial, (unsigned long long)st.version);
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
	memset(now, 0, sizeof(*now));
	now->resp.code = EST_CODE(2, 4);
	now->resp.cf = EST_CF_NONE;
	snprintf(now->note, sizeof(now->note), "%s status=%s", what, st.status ? "success" : "failure");
	return 1;
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

int brski_submit(struct brski *b, const struct brski_request *rq,
		 proxy_done_fn fn, void *arg, struct brski_wait **wait,
		 struct proxy_outcome *now)
{
	*wait = NULL;
	if (rq->method != EST_POST)
		return answer(now, EST_CODE(4, 5), "only POST", 0);
	if (rq->res == BRSKI_RV)
		return handle_rv(b, rq, fn, arg, wait, now);
	return handle_status(b, rq, now);
}

const struct brski_stats *brski_get_stats(const struct brski *b)
{
	return &b->stats;
}

struct brski *brski_new(struct event_base *base, struct upstream *up,
			const struct estgw_config *cfg)
{
	struct brski *b = calloc(1, sizeof(*b));
	char why[200];

	if (!b)
		return NULL;
	b->base = base;
	b->up = up;
	b->cfg = cfg;
	b->signer = brski_signer_new(cfg->server.private_key, why, sizeof(why));
	b->mfr_trust = brski_trust_load(cfg->brski.manufacturer_trust);
	if (!b->signer || !b->mfr_trust ||
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
	while (b->jobs)
		job_free(b->jobs);
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
