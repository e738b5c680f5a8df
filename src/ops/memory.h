/* memory.h - giving start-up memory back to the system (Linux). */
#ifndef ESTGW_OPS_MEMORY_H
#define ESTGW_OPS_MEMORY_H

#include <stddef.h>

/** What estgw_mem_settle() gave back, in kB. */
struct estgw_mem_settled {
	size_t heap_kb;   /**< RssAnon before minus after malloc_trim */
	size_t pages_kb;  /**< RssFile before minus after: library pages unmapped */
	size_t rss_kb;    /**< VmRSS afterwards */
};

/** After start-up (and after a reload): return the heap's free pages to the
 *  system (malloc_trim), and drop from this process's page tables the pages
 *  of every loaded object's read-only segments (code, constant data, symbol
 *  tables: the PT_LOADs without PF_W, as the dynamic linker lists them) that
 *  start-up touched: the dynamic linker's symbol lookups and relocations,
 *  library constructors, configuration parsing. Those segments are never
 *  written, so each of their pages is the file's page in the page cache,
 *  which the kernel may also unmap at any time under memory pressure:
 *  nothing is lost, and what the gateway uses later comes back on its first
 *  access (a minor fault, no disk read while the file is cached). RELRO data
 *  (in the writable PT_LOAD), the vDSO and objects with text relocations are
 *  never touched. @p out may be NULL. Never fails. */
void estgw_mem_settle(struct estgw_mem_settled *out);

#endif
