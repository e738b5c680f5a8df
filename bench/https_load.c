/* https_load.c - the reference path: the same devices enrol straight with the
 * EST CA over HTTPS (libcurl multi), as they would without the registrar.
 *
 * One TLS session per device (no session cache, the connection is closed
 * after the device's last request): GET cacerts, POST simpleenroll (and
 * simplereenroll) on that connection. The device certificate, its key and
 * the CA trust are set from the pre-made objects (CURLOPT_SSL_CTX_FUNCTION),
 * so curl parses no PEM per connection either.
 */
#include "bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>

enum step { ST_CRTS, ST_SEN, ST_SREN, ST_DONE };

struct hdev {
	struct run *r;
	struct device *d;
	X509_STORE *trust;
	CURL *easy;
	enum step step;
	double t_start;
	char *b64;
	int done;
};

static CURLcode on_ssl_ctx(CURL *easy, void *ssl_ctx, void *arg)
{
	struct hdev *h = arg;
	SSL_CTX *ctx = ssl_ctx;

	if (SSL_CTX_use_certificate(ctx, h->d->cert) != 1 ||
	    SSL_CTX_use_PrivateKey(ctx, h->d->key) != 1 ||
	    !X509_STORE_up_ref(h->trust))
		return CURLE_SSL_CERTPROBLEM;
	SSL_CTX_set_cert_store(ctx, h->trust);
	return CURLE_OK;
}

static size_t on_body(char *p, size_t sz, size_t n, void *arg)
{
	return sz * n; /* the body is not checked here: estgw's tests do that */
}

static int last_step(struct run *r)
{
	return r->do_sren ? ST_SREN : r->do_sen ? ST_SEN : ST_CRTS;
}

static int enabled(struct run *r, enum step s)
{
	return (s == ST_CRTS && r->do_crts) || (s == ST_SEN && r->do_sen) ||
	       (s == ST_SREN && r->do_sren);
}

static void set_step(struct hdev *h, const char *base, struct curl_slist *hdrs)
{
	static const char *const ops[] = { "cacerts", "simpleenroll", "simplereenroll" };
	char url[512];

	snprintf(url, sizeof(url), "%s/%s", base, ops[h->step]);
	curl_easy_setopt(h->easy, CURLOPT_URL, url);
	if (h->step == ST_CRTS) {
		curl_easy_setopt(h->easy, CURLOPT_HTTPGET, 1L);
	} else {
		curl_easy_setopt(h->easy, CURLOPT_POSTFIELDS, h->b64);
		curl_easy_setopt(h->easy, CURLOPT_HTTPHEADER, hdrs);
	}
	curl_easy_setopt(h->easy, CURLOPT_FORBID_REUSE,
			 (long)((int)h->step == last_step(h->r)));
}

static int start(struct hdev *h, CURLM *multi, const char *base, struct curl_slist *hdrs)
{
	int n = (int)(4 * ((h->d->csr_len + 2) / 3) + 1);

	h->b64 = malloc((size_t)n);
	h->easy = curl_easy_init();
	if (!h->b64 || !h->easy)
		return -1;
	EVP_EncodeBlock((unsigned char *)h->b64, h->d->csr, (int)h->d->csr_len);
	curl_easy_setopt(h->easy, CURLOPT_PRIVATE, h);
	curl_easy_setopt(h->easy, CURLOPT_CAINFO, NULL);
	curl_easy_setopt(h->easy, CURLOPT_CAPATH, NULL);
	curl_easy_setopt(h->easy, CURLOPT_SSL_CTX_FUNCTION, on_ssl_ctx);
	curl_easy_setopt(h->easy, CURLOPT_SSL_CTX_DATA, h);
	curl_easy_setopt(h->easy, CURLOPT_SSL_SESSIONID_CACHE, 0L);
	curl_easy_setopt(h->easy, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
	curl_easy_setopt(h->easy, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h->easy, CURLOPT_TIMEOUT_MS, (long)(h->r->timeout_s * 1e3));
	h->step = ST_CRTS;
	while (!enabled(h->r, h->step))
		h->step++;
	set_step(h, base, hdrs);
	h->t_start = bench_now();
	return curl_multi_add_handle(multi, h->easy) == CURLM_OK ? 0 : -1;
}

static void finish(struct hdev *h, CURLM *multi, const char *fail)
{
	curl_multi_remove_handle(multi, h->easy);
	curl_easy_cleanup(h->easy);
	h->easy = NULL;
	free(h->b64);
	h->b64 = NULL;
	h->done = 1;
	if (fail) {
		run_fail(h->r, fail);
	} else {
		h->r->ok++;
		series_add(&h->r->lat[LAT_TOTAL], (bench_now() - h->t_start) * 1e3);
	}
}

/* One transfer finished: record it, then the next step or the end. */
static void on_done(struct hdev *h, CURLM *multi, CURLcode res, const char *base,
		    struct curl_slist *hdrs)
{
	static const enum lat_kind kind[] = { LAT_CRTS, LAT_SEN, LAT_SREN };
	curl_off_t total = 0, app = 0;
	long status = 0;
	char what[24];

	if (res != CURLE_OK) {
		snprintf(what, sizeof(what), "curl-%d", (int)res);
		finish(h, multi, what);
		return;
	}
	curl_easy_getinfo(h->easy, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_getinfo(h->easy, CURLINFO_TOTAL_TIME_T, &total);
	curl_easy_getinfo(h->easy, CURLINFO_APPCONNECT_TIME_T, &app);
	if (status != 200) {
		snprintf(what, sizeof(what), "http-%ld", status);
		finish(h, multi, what);
		return;
	}
	if (app > 0) /* this transfer made the connection */
		series_add(&h->r->lat[LAT_HS], (double)app / 1e3);
	series_add(&h->r->lat[kind[h->step]], (double)(total - app) / 1e3);
	do
		h->step++;
	while (h->step != ST_DONE && !enabled(h->r, h->step));
	if (h->step == ST_DONE) {
		finish(h, multi, NULL);
		return;
	}
	curl_multi_remove_handle(multi, h->easy);
	set_step(h, base, hdrs);
	curl_multi_add_handle(multi, h->easy);
}

int https_load_run(struct run *r, struct device_set *set, const char *base)
{
	CURLM *multi = curl_multi_init();
	struct hdev *hd = calloc(r->n ? r->n : 1, sizeof(*hd));
	struct curl_slist *hdrs = curl_slist_append(NULL, "Content-Type: application/pkcs10");
	size_t next = 0, active = 0, finished = 0;
	double last_sample = 0;

	if (!multi || !hd || !hdrs)
		return -1;
	hdrs = curl_slist_append(hdrs, "Content-Transfer-Encoding: base64");
	procs_start(r);
	while (finished < r->n) {
		CURLMsg *m;
		int running, left;
		while (active < r->concurrency && next < r->n) {
			struct hdev *h = &hd[next++];
			h->r = r;
			h->d = &set->dev[next - 1];
			h->trust = set->trust;
			active++;
			if (start(h, multi, base, hdrs) != 0) {
				finish(h, multi, "curl-setup");
				active--;
				finished++;
			}
		}
		curl_multi_perform(multi, &running);
		while ((m = curl_multi_info_read(multi, &left))) {
			struct hdev *h;
			if (m->msg != CURLMSG_DONE)
				continue;
			curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&h);
			on_done(h, multi, m->data.result, base, hdrs);
			if (h->done) {
				active--;
				finished++;
			}
		}
		if (bench_now() - last_sample > 0.05) {
			procs_sample(r);
			last_sample = bench_now();
		}
		curl_multi_poll(multi, NULL, 0, 5, NULL);
	}
	procs_stop(r);
	curl_slist_free_all(hdrs);
	curl_multi_cleanup(multi);
	free(hd);
	return 0;
}
