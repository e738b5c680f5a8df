/* memory.c - start-up memory given back to the system (owns the madvise
 * and malloc_trim calls made outside the session sweep).
 *
 * A process's RSS at start is mostly pages of shared libraries (about 10 of
 * 12.5 MB with Debian's libcurl, which links some 28 libraries estgw never
 * calls): the dynamic linker reads their symbol tables and relocates them,
 * their constructors run, and the kernel maps up to 64 KiB around each page
 * touched. Those pages are clean copies of the files; after start-up they
 * are dropped from estgw's page tables (see memory.h for the rule that makes
 * it safe) and the pages that serve requests come back as they are used.
 * docs/performance.md "Memory budget" has the figures.
 */
#include "ops/memory.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#define MAX_RANGES 1024

struct range {
	unsigned long start, end;
	size_t rss_kb;
};

/* The kB of a "/proc/self/status" line such as "VmRSS:" (-1: unknown). */
static long status_kb(const char *key)
{
	FILE *f = fopen("/proc/self/status", "re");
	size_t klen = strlen(key);
	char line[256];
	long kb = -1;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, key, klen) == 0) {
			kb = strtol(line + klen, NULL, 10);
			break;
		}
	fclose(f);
	return kb;
}

/* A smaps mapping header: "start-end perms offset dev inode [path]". */
static int parse_header(const char *line, struct range *r, int *droppable)
{
	char perms[8];
	unsigned long inode;

	if (sscanf(line, "%lx-%lx %7s %*s %*s %lu", &r->start, &r->end, perms,
		   &inode) != 4)
		return 0;
	r->rss_kb = 0;
	/* private, not writable, backed by a file (no [heap], [stack], [vdso]) */
	*droppable = perms[1] != 'w' && perms[3] == 'p' && inode != 0;
	return 1;
}

/* Every droppable mapping with resident pages and none of its own. */
static size_t find_ranges(struct range *out, size_t max)
{
	FILE *f = fopen("/proc/self/smaps", "re");
	struct range cur = { 0, 0, 0 };
	int droppable = 0, own = 0;
	char line[4352]; /* a header line with the longest path (PATH_MAX) */
	size_t n = 0;
	unsigned long kb;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		struct range next;
		int d;

		if (parse_header(line, &next, &d)) {
			if (droppable && !own && cur.rss_kb && n < max)
				out[n++] = cur;
			cur = next;
			droppable = d;
			own = 0;
		} else if (sscanf(line, "Rss: %lu kB", &kb) == 1) {
			cur.rss_kb = kb;
		} else if (sscanf(line, "Anonymous: %lu kB", &kb) == 1 ||
			   sscanf(line, "Locked: %lu kB", &kb) == 1) {
			own |= kb != 0;
		}
	}
	if (droppable && !own && cur.rss_kb && n < max)
		out[n++] = cur;
	fclose(f);
	return n;
}

void estgw_mem_settle(struct estgw_mem_settled *out)
{
	static struct range r[MAX_RANGES];
	long anon0 = status_kb("RssAnon:");
	size_t n, dropped = 0;

#ifdef __GLIBC__
	malloc_trim(0);
#endif
	long anon1 = status_kb("RssAnon:");
	n = find_ranges(r, MAX_RANGES);
	for (size_t i = 0; i < n; i++)
		if (madvise((void *)r[i].start, r[i].end - r[i].start, MADV_DONTNEED) == 0)
			dropped += r[i].rss_kb;
	if (!out)
		return;
	out->heap_kb = anon0 > anon1 && anon1 >= 0 ? (size_t)(anon0 - anon1) : 0;
	out->pages_kb = dropped;
	long rss = status_kb("VmRSS:");
	out->rss_kb = rss > 0 ? (size_t)rss : 0;
}
