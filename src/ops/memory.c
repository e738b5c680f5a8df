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

/* Whole pages inside [from, to): a page shared with a neighbour is kept. */
static void drop_pages(uintptr_t from, uintptr_t to, uintptr_t page)
{
	uintptr_t start = (from + page - 1) & ~(page - 1);
	uintptr_t end = to & ~(page - 1);

	if (end > start)
		(void)madvise((void *)start, end - start, MADV_DONTNEED);
}

/* Each loaded object's segments that are never written: PT_LOAD without
 * PF_W (code, constant data, symbol tables). The RELRO part of an object
 * (written while relocating, then made read-only) lies in its writable
 * PT_LOAD and is never touched; nor is the vDSO (no file behind it), nor an
 * object with text relocations (its code was written). */
static int drop_object(struct dl_phdr_info *info, size_t size, void *arg)
{
	uintptr_t page = *(const uintptr_t *)arg;
	const ElfW(Phdr) *ph = info->dlpi_phdr;

	(void)size;
	if ((uintptr_t)info->dlpi_addr == (uintptr_t)getauxval(AT_SYSINFO_EHDR) &&
	    getauxval(AT_SYSINFO_EHDR) != 0)
		return 0;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		if (ph[i].p_type != PT_DYNAMIC)
			continue;
		for (const ElfW(Dyn) *d = (const void *)(info->dlpi_addr + ph[i].p_vaddr);
		     d->d_tag != DT_NULL; d++)
			if (d->d_tag == DT_TEXTREL ||
			    (d->d_tag == DT_FLAGS && (d->d_un.d_val & DF_TEXTREL)))
				return 0;
	}
	for (int i = 0; i < info->dlpi_phnum; i++) {
		uintptr_t from = info->dlpi_addr + ph[i].p_vaddr;

		if (ph[i].p_type == PT_LOAD && !(ph[i].p_flags & PF_W) && ph[i].p_memsz)
			drop_pages(from, from + ph[i].p_memsz, page);
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
