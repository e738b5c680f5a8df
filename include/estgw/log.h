/* log.h - one logging call per level, to stderr or syslog.
 *
 * Lines look like "estgw[pid]: <level> <group>: message". Never pass private
 * keys or whole CSRs to these functions.
 */
#ifndef ESTGW_LOG_H
#define ESTGW_LOG_H

#include <syslog.h>

/** Choose the sink and the most verbose level that is printed. */
void estgw_log_init(int use_syslog, int level);
int estgw_log_level(void);
/** Change the level at run time (config reload). */
void estgw_log_set_level(int level);
/** stderr lines as text (0, default) or as one JSON object per line (1):
 *  {"ts":"...","level":"info","pid":N,"group":"req","msg":"..."}. */
void estgw_log_set_format(int json);
void estgw_log(int prio, const char *group, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#define log_err(g, ...) estgw_log(LOG_ERR, g, __VA_ARGS__)
#define log_warn(g, ...) estgw_log(LOG_WARNING, g, __VA_ARGS__)
#define log_info(g, ...) estgw_log(LOG_INFO, g, __VA_ARGS__)
#define log_debug(g, ...)                                                  \
	do {                                                               \
		if (estgw_log_level() >= LOG_DEBUG)                        \
			estgw_log(LOG_DEBUG, g, __VA_ARGS__);              \
	} while (0)

#endif
