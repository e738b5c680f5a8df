/* stats.c - measurement for estgw-bench: latency series and percentiles,
 * CPU seconds and RSS of the measured processes from /proc, the report
 * (text on stdout, one JSON object per run appended to a file).
 */
#include "bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

double bench_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double bench_self_cpu(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
	       (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

void series_add(struct series *s, double v)
{
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 1024;
		double *nv = realloc(s->v, cap * sizeof(*nv));
		if (!nv)
			return;
		s->v = nv;
		s->cap = cap;
	}
	s->v[s->n++] = v;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* Nearest-rank percentile (p in 0..100); 0 for an empty series. */
double series_pct(struct series *s, double p)
{
	size_t k;

	if (s->n == 0)
		return 0;
	qsort(s->v, s->n, sizeof(*s->v), cmp_double);
	k = (size_t)(p / 100.0 * (double)s->n + 0.999999);
	if (k < 1)
		k = 1;
	return s->v[(k > s->n ? s->n : k) - 1];
}

void run_fail(struct run *r, const char *what)
{
	size_t i;

	r->failed++;
	for (i = 0; i < r->nfails; i++)
		if (strcmp(r->fails[i].what, what) == 0)
			break;
	if (i == r->nfails) {
		if (r->nfails == BENCH_MAX_FAILS)
			i = BENCH_MAX_FAILS - 1; /* lumped into the last row */
		else
			snprintf(r->fails[r->nfails++].what, sizeof(r->fails[0].what), "%s", what);
	}
	r->fails[i].count++;
}

/* utime + stime of a process, seconds (fields 14 and 15 of /proc/PID/stat). */
static double proc_cpu(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long ut = 0, st = 0;
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	p = strrchr(buf, ')'); /* the command name may hold spaces */
	if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
			 &ut, &st) != 2)
		return -1;
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* The kB value of the /proc/PID/status line that starts with @p key. */
static long status_kb(pid_t pid, const char *key)
{
	char path[64], line[256];
	size_t klen = strlen(key);
	long kb = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, key, klen) == 0 && line[klen] == ':') {
			kb = strtol(line + klen + 1, NULL, 10);
			break;
		}
	fclose(f);
	return kb;
}

long proc_rss_kb(pid_t pid)
{
	return status_kb(pid, "VmRSS");
}

long proc_anon_kb(pid_t pid)
{
	return status_kb(pid, "RssAnon");
}

void procs_start(struct run *r)
{
	for (size_t i = 0; i < r->nprocs; i++) {
		struct proc_watch *w = &r->procs[i];
		w->cpu0 = proc_cpu(w->pid);
		w->rss0 = w->rss_peak = proc_rss_kb(w->pid);
		w->anon0 = proc_anon_kb(w->pid);
	}
	r->self_cpu = bench_self_cpu();
	r->t0 = bench_now();
}

void procs_sample(struct run *r)
{
	for (size_t i = 0; i < r->nprocs; i++) {
		long kb = proc_rss_kb(r->procs[i].pid);
		if (kb > r->procs[i].rss_peak)
			r->procs[i].rss_peak = kb;
	}
}

void procs_stop(struct run *r)
{
	r->t1 = bench_now();
	r->self_cpu = bench_self_cpu() - r->self_cpu;
	procs_sample(r);
	for (size_t i = 0; i < r->nprocs; i++) {
		struct proc_watch *w = &r->procs[i];
		w->cpu1 = proc_cpu(w->pid);
		w->rss1 = proc_rss_kb(w->pid);
	}
}

static const char *const lat_names[LAT_N] = { "handshake", "crts", "sen", "sren", "device" };

static void report_text(struct run *r)
{
	double wall = r->t1 - r->t0;

	printf("== %s (%s): %zu devices, %zu at a time, block %zu\n", r->label, r->mode,
	       r->n, r->concurrency, r->block);
	printf("   ok %zu, failed %zu, wall %.2f s, %.1f devices/s, %.1f handshakes/s\n",
	       r->ok, r->failed, wall, (double)r->ok / wall,
	       (double)r->lat[LAT_HS].n / wall);
	for (size_t i = 0; i < r->nfails; i++)
		printf("   failure %-22s %zu\n", r->fails[i].what, r->fails[i].count);
	for (int k = 0; k < LAT_N; k++) {
		struct series *s = &r->lat[k];
		if (s->n)
			printf("   %-9s ms p50 %7.2f p90 %7.2f p99 %7.2f max %7.2f (n=%zu)\n",
			       lat_names[k], series_pct(s, 50), series_pct(s, 90),
			       series_pct(s, 99), series_pct(s, 100), s->n);
	}
	printf("   bench client CPU %.2f s\n", r->self_cpu);
	for (size_t i = 0; i < r->nprocs; i++) {
		struct proc_watch *w = &r->procs[i];
		printf("   %-8s CPU %.2f s (%.3f ms per ok device), RSS %ld -> peak %ld -> %ld kB\n",
		       w->name, w->cpu1 - w->cpu0,
		       r->ok ? (w->cpu1 - w->cpu0) * 1e3 / (double)r->ok : 0.0,
		       w->rss0, w->rss_peak, w->rss1);
		if (r->idle_open)
			printf("   %-8s idle: %zu sessions, RSS %ld -> %ld kB (anon %ld -> %ld), "
			       "%.1f KiB per session\n",
			       w->name, r->idle_open, r->idle_rss_before[i], r->idle_rss_after[i],
			       r->idle_anon_before[i], r->idle_anon_after[i],
			       (double)(r->idle_rss_after[i] - r->idle_rss_before[i]) /
				       (double)r->idle_open);
	}
	fflush(stdout);
}

static void report_json(struct run *r, FILE *f)
{
	fprintf(f, "{\"label\": \"%s\", \"mode\": \"%s\", \"n\": %zu, \"concurrency\": %zu, "
		   "\"block\": %zu, \"ops\": \"%s%s%s\", \"ok\": %zu, \"failed\": %zu, "
		   "\"wall_s\": %.4f, \"client_cpu_s\": %.4f, \"idle_open\": %zu, \"failures\": {",
		r->label, r->mode, r->n, r->concurrency, r->block, r->do_crts ? "crts," : "",
		r->do_sen ? "sen," : "", r->do_sren ? "sren," : "", r->ok, r->failed,
		r->t1 - r->t0, r->self_cpu, r->idle_open);
	for (size_t i = 0; i < r->nfails; i++)
		fprintf(f, "%s\"%s\": %zu", i ? ", " : "", r->fails[i].what, r->fails[i].count);
	fprintf(f, "}, \"lat_ms\": {");
	for (int k = 0, first = 1; k < LAT_N; k++) {
		struct series *s = &r->lat[k];
		if (!s->n)
			continue;
		fprintf(f, "%s\"%s\": {\"n\": %zu, \"p50\": %.3f, \"p90\": %.3f, \"p99\": %.3f, "
			   "\"max\": %.3f}", first ? "" : ", ", lat_names[k], s->n,
			series_pct(s, 50), series_pct(s, 90), series_pct(s, 99), series_pct(s, 100));
		first = 0;
	}
	if (r->samples) {
		fprintf(f, "}, \"sen_samples_ms\": [");
		for (size_t i = 0; i < r->lat[LAT_SEN].n; i++)
			fprintf(f, "%s%.3f", i ? ", " : "", r->lat[LAT_SEN].v[i]);
		fprintf(f, "]");
	} else {
		fprintf(f, "}");
	}
	fprintf(f, ", \"procs\": {");
	for (size_t i = 0; i < r->nprocs; i++) {
		struct proc_watch *w = &r->procs[i];
		fprintf(f, "%s\"%s\": {\"cpu_s\": %.4f, \"rss0_kb\": %ld, \"rss_peak_kb\": %ld, "
			   "\"rss1_kb\": %ld, \"anon0_kb\": %ld, \"idle_rss_before_kb\": %ld, "
			   "\"idle_rss_after_kb\": %ld, \"idle_anon_before_kb\": %ld, "
			   "\"idle_anon_after_kb\": %ld}",
			i ? ", " : "", w->name, w->cpu1 - w->cpu0, w->rss0, w->rss_peak, w->rss1,
			w->anon0, r->idle_rss_before[i], r->idle_rss_after[i],
			r->idle_anon_before[i], r->idle_anon_after[i]);
	}
	fprintf(f, "}}\n");
}

void run_report(struct run *r, const char *json_file)
{
	FILE *f;

	report_text(r);
	if (!json_file)
		return;
	f = fopen(json_file, "a");
	if (!f) {
		perror(json_file);
		return;
	}
	report_json(r, f);
	fclose(f);
}

void run_free(struct run *r)
{
	for (int k = 0; k < LAT_N; k++)
		free(r->lat[k].v);
}
