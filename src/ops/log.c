/* log.c - the log sink: stderr lines or syslog. Owns no other state. */
#include "estgw/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int g_syslog;
static int g_level = LOG_INFO;
static int g_json;

static const char *const level_names[] = {
	"emerg", "alert", "crit", "error", "warning", "notice", "info", "debug",
};

void estgw_log_init(int use_syslog, int level)
{
	g_syslog = use_syslog;
	g_level = level;
	if (use_syslog)
		openlog("estgw", LOG_PID, LOG_DAEMON);
}

int estgw_log_level(void)
{
	return g_level;
}

void estgw_log_set_level(int level)
{
	g_level = level;
}

void estgw_log_set_format(int json)
{
	g_json = json;
}

/** @p s as the inside of a JSON string (RFC 8259 escapes), cut to fit. */
static void json_escape(const char *s, char *out, size_t outlen)
{
	static const char hex[] = "0123456789abcdef";
	size_t n = 0;

	for (; *s && n + 7 < outlen; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\') {
			out[n++] = '\\';
			out[n++] = (char)c;
		} else if (c < 0x20 || c == 0x7f) {
			memcpy(out + n, "\\u00", 4);
			out[n + 4] = hex[c >> 4];
			out[n + 5] = hex[c & 15];
			n += 6;
		} else {
			out[n++] = (char)c;
		}
	}
	out[n] = '\0';
}

void estgw_log(int prio, const char *group, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	if (prio > g_level)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (g_syslog) {
		syslog(prio, "%s: %s", group, msg);
		return;
	}
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	if (g_json) {
		char esc[2 * sizeof(msg) + 8];
		json_escape(msg, esc, sizeof(esc));
		fprintf(stderr, "{\"ts\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ\","
			"\"level\":\"%s\",\"pid\":%d,\"group\":\"%s\",\"msg\":\"%s\"}\n",
			tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
			tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000L,
			level_names[prio & 7], (int)getpid(), group, esc);
		return;
	}
	fprintf(stderr, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ estgw[%d]: %s %s: %s\n",
		tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
		tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000L, (int)getpid(),
		level_names[prio & 7], group, msg);
}
