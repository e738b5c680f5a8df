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

/* The smaps fields of one mapping that decide (kB). */
struct pages {
	unsigned long rss, clean, own;
};

/* A mapping whose every resident page is a clean page of its file: Rss is
 * all Shared_Clean + Private_Clean, and no page is anonymous (copied on
 * write, also when swapped out), dirty or locked. An smaps that says nothing real (qemu-user
 * prints 0 for every field) gives Rss 0: nothing is dropped there. */
static int only_clean(const struct pages *p)
{
	return p->rss && p->clean == p->rss && !p->own;
}

static void add_field(const char *line, struct pages *p)
{
	/* Swap: a page of its own swapped out is in no other field, and
	 * MADV_DONTNEED would drop it too */
	static const char *const own[] = { "Anonymous:", "Swap:", "Locked:",
					    "Shared_Dirty:", "Private_Dirty:" };
	unsigned long kb;
	const char *v = strchr(line, ':');

	if (!v || sscanf(v + 1, "%lu", &kb) != 1)
		return;
	if (strncmp(line, "Rss:", 4) == 0)
		p->rss = kb;
	else if (strncmp(line, "Shared_Clean:", 13) == 0 ||
		 strncmp(line, "Private_Clean:", 14) == 0)
		p->clean += kb;
	else
		for (size_t i = 0; i < sizeof(own) / sizeof(own[0]); i++)
			if (strncmp(line, own[i], strlen(own[i])) == 0)
				p->own += kb;
}

/* Every droppable mapping with only clean pages of its file resident. */
static size_t find_ranges(struct range *out, size_t max)
{
	FILE *f = fopen("/proc/self/smaps", "re");
	struct range cur = { 0, 0, 0 };
	struct pages pg = { 0, 0, 0 };
	char line[4352]; /* a header line with the longest path (PATH_MAX) */
	int droppable = 0;
	size_t n = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		struct range next;
		int d;

		if (!parse_header(line, &next, &d)) {
			add_field(line, &pg);
			continue;
		}
		if (droppable && only_clean(&pg) && n < max) {
			cur.rss_kb = pg.rss;
			out[n++] = cur;
		}
		cur = next;
		droppable = d;
		pg = (struct pages){ 0, 0, 0 };
	}
	if (droppable && only_clean(&pg) && n < max) {
		cur.rss_kb = pg.rss;
		out[n++] = cur;
	}
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
