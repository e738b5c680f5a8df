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
 *
 * Where the read-only segments are comes from the dynamic linker
 * (dl_iterate_phdr), not from /proc/self/maps: under qemu-user that file is
 * made up and once showed a library's RELRO page inside its code.
 */
#include "ops/memory.h"

#include <elf.h>
#include <link.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <unistd.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

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

#define MAX_WRITABLE 8 /* writable PT_LOADs of one object (1 or 2 in practice) */

struct span {
	uintptr_t start, end;
};

/* [from, to) rounded out to whole pages, less every page a writable segment
 * of the same object (@p w, @p nw, rounded out too) touches. */
static void drop_pages(uintptr_t from, uintptr_t to, uintptr_t page,
		       const struct span *w, size_t nw)
{
	uintptr_t start = from & ~(page - 1);
	uintptr_t end = (to + page - 1) & ~(page - 1);

	for (size_t i = 0; i < nw; i++) {
		if (w[i].start >= end || w[i].end <= start)
			continue;
		if (w[i].start <= start)
			start = w[i].end; /* it overlaps the head */
		else
			end = w[i].start; /* the tail, or the middle: keep the rest */
	}
	if (end > start)
		(void)madvise((void *)start, end - start, MADV_DONTNEED);
}

static int has_textrel(const struct dl_phdr_info *info)
{
	const ElfW(Phdr) *ph = info->dlpi_phdr;

	for (int i = 0; i < info->dlpi_phnum; i++) {
		if (ph[i].p_type != PT_DYNAMIC)
			continue;
		for (const ElfW(Dyn) *d = (const void *)(info->dlpi_addr + ph[i].p_vaddr);
		     d->d_tag != DT_NULL; d++)
			if (d->d_tag == DT_TEXTREL ||
			    (d->d_tag == DT_FLAGS && (d->d_un.d_val & DF_TEXTREL)))
				return 1;
	}
	return 0;
}

/* Each loaded object's segments that are never written: PT_LOAD without
 * PF_W (code, constant data, symbol tables). The RELRO part of an object
 * (written while relocating, then made read-only) lies in its writable
 * PT_LOAD, whose pages are never touched; nor is the vDSO (no file behind
 * it), nor an object with text relocations (its code was written). */
static int drop_object(struct dl_phdr_info *info, size_t size, void *arg)
{
	uintptr_t page = *(const uintptr_t *)arg;
	const ElfW(Phdr) *ph = info->dlpi_phdr;
	unsigned long vdso = getauxval(AT_SYSINFO_EHDR);
	struct span w[MAX_WRITABLE];
	size_t nw = 0;

	(void)size;
	if ((vdso && (uintptr_t)info->dlpi_addr == (uintptr_t)vdso) || has_textrel(info))
		return 0;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		uintptr_t from = info->dlpi_addr + ph[i].p_vaddr;

		if (ph[i].p_type != PT_LOAD || !(ph[i].p_flags & PF_W))
			continue;
		if (nw == MAX_WRITABLE)
			return 0; /* an odd object: leave it alone */
		w[nw++] = (struct span){ from & ~(page - 1),
					 (from + ph[i].p_memsz + page - 1) & ~(page - 1) };
	}
	for (int i = 0; i < info->dlpi_phnum; i++) {
		uintptr_t from = info->dlpi_addr + ph[i].p_vaddr;

		if (ph[i].p_type == PT_LOAD && !(ph[i].p_flags & PF_W) && ph[i].p_memsz)
			drop_pages(from, from + ph[i].p_memsz, page, w, nw);
	}
	return 0;
}

void estgw_mem_settle(struct estgw_mem_settled *out)
{
	uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
	long anon0 = status_kb("RssAnon:");

#ifdef __GLIBC__
	malloc_trim(0);
#endif
	long anon1 = status_kb("RssAnon:");
	long file0 = status_kb("RssFile:");
	if (page > 0 && (page & (page - 1)) == 0)
		dl_iterate_phdr(drop_object, &page);
	if (!out)
		return;
	long file1 = status_kb("RssFile:");
	long rss = status_kb("VmRSS:");
	out->heap_kb = anon0 > anon1 && anon1 >= 0 ? (size_t)(anon0 - anon1) : 0;
	out->pages_kb = file0 > file1 && file1 >= 0 ? (size_t)(file0 - file1) : 0;
	out->rss_kb = rss > 0 ? (size_t)rss : 0;
}
