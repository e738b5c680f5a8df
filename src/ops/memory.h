/* memory.h - giving start-up memory back to the system (Linux). */
#ifndef ESTGW_OPS_MEMORY_H
#define ESTGW_OPS_MEMORY_H

#include <stddef.h>

/** What estgw_mem_settle() gave back, in kB. */
struct estgw_mem_settled {
	size_t heap_kb;   /**< RssAnon before minus after malloc_trim */
	size_t pages_kb;  /**< clean library and file pages unmapped */
	size_t rss_kb;    /**< VmRSS afterwards */
};

/** After start-up (and after a reload): return the heap's free pages to the
 *  system (malloc_trim), and drop from this process's page tables the clean
 *  pages of library code and of each file's first read-only segment (its
 *  symbol tables) that start-up touched: the dynamic linker's symbol lookups and relocations,
 *  library constructors, configuration parsing. Only mappings that are
 *  private, not writable and whose resident pages are all clean pages of
 *  the file (smaps: Rss = Shared_Clean + Private_Clean; Anonymous, Swap,
 *  dirty and locked 0) are dropped, so nothing is lost: such a page is the file's page in
 *  the page cache, which the kernel may also unmap at any time under memory
 *  pressure; RELRO data and any other read-only segment are never touched;
 *  what the gateway uses later comes back from the page cache on
 *  its first access (a minor fault, no disk read while the file is cached).
 *  @p out may be NULL. Never fails; does nothing where /proc/self/smaps
 *  cannot be read. */
void estgw_mem_settle(struct estgw_mem_settled *out);

#endif
