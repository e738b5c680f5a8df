/* bench.h - shared types of estgw-bench (bench-only, see bench/README.md).
 *
 * devices.c makes the simulated devices (OpenSSL), coap_load.c drives them
 * over DTLS/CoAP (libcoap), https_load.c straight to the EST CA (libcurl),
 * stats.c measures (latency percentiles, /proc CPU and RSS) and reports.
 */
#ifndef ESTGW_BENCH_H
#define ESTGW_BENCH_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define BENCH_MAX_PROCS 4
#define BENCH_MAX_FAILS 16

/* One simulated device: its own key, certificate (from the device CA) and CSR. */
struct device {
	void *key;             /* EVP_PKEY * */
	void *cert;            /* X509 * */
	uint8_t *csr;          /* PKCS#10 DER */
	size_t csr_len;
};

struct device_set {
	struct device *dev;
	size_t n;
	void *trust;           /* X509_STORE * of the server's CA */
};

/* Make n devices whose certificates the CA in ca_cert/ca_key issues. */
int devices_make(struct device_set *set, size_t n, const char *ca_cert,
		 const char *ca_key, const char *server_trust);
void devices_free(struct device_set *set);

/* ---- measurement ---- */
struct series {
	double *v;
	size_t n, cap;
};

enum lat_kind { LAT_HS, LAT_CRTS, LAT_SEN, LAT_SREN, LAT_TOTAL, LAT_N };

struct proc_watch {
	char name[32];
	pid_t pid;
	double cpu0, cpu1;     /* utime+stime seconds at start and end */
	long rss0, rss_peak, rss1; /* kB */
	long anon0;            /* kB of RssAnon at start: private memory, no library pages */
};

struct run {
	/* what */
	const char *label, *mode;
	size_t n, concurrency, block;
	int do_crts, do_sen, do_sren;
	double timeout_s;
	int samples;           /* --samples: every /sen latency in the JSON */
	/* results */
	size_t ok, failed;
	struct { char what[24]; size_t count; } fails[BENCH_MAX_FAILS];
	size_t nfails;
	struct series lat[LAT_N];
	double t0, t1;         /* wall clock, s */
	double self_cpu;       /* the bench process itself, s */
	struct proc_watch procs[BENCH_MAX_PROCS];
	size_t nprocs;
	/* idle mode */
	size_t idle_open;
	long idle_rss_before[BENCH_MAX_PROCS], idle_rss_after[BENCH_MAX_PROCS];
	long idle_anon_before[BENCH_MAX_PROCS], idle_anon_after[BENCH_MAX_PROCS];
};

double bench_now(void);
double bench_self_cpu(void);
void series_add(struct series *s, double v);
double series_pct(struct series *s, double p);
void run_fail(struct run *r, const char *what);
void procs_start(struct run *r);
void procs_sample(struct run *r);
void procs_stop(struct run *r);
long proc_rss_kb(pid_t pid);
/* RssAnon: the part of RSS that is the process's own (heap, stacks, written
 * library data), without the pages of shared libraries and files. */
long proc_anon_kb(pid_t pid);
void run_report(struct run *r, const char *json_file);
void run_free(struct run *r);

/* ---- load generators ---- */
struct coap_target {
	const char *host;
	unsigned port;
	const char *root;      /* "/.well-known/est" (the bare server serves any path) */
};

int coap_load_run(struct run *r, struct device_set *set, const struct coap_target *t);
/* Open r->n sessions (r->concurrency handshakes at a time), hold them
 * hold_s seconds, sample RSS of r->procs before and after. */
int coap_idle_run(struct run *r, struct device_set *set, const struct coap_target *t,
		  double hold_s);
int https_load_run(struct run *r, struct device_set *set, const char *base_url);

#endif
