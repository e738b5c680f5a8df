/* keylog.c - the NSS key log (SSLKEYLOGFILE format) for every DTLS and
 * upstream TLS session, when [log] keylog_file is set. OpenSSL types stay in
 * src/tls/; nothing here is per request.
 */
#include "tls/keylog.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "estgw/log.h"

#define KEYLOG_LINE_MAX 512

/* ---- key log (NSS key log format, SSLKEYLOGFILE) ----------------------
 * OpenSSL's keylog callback takes no argument, so the open file is one
 * process-wide sink, like the log. -1: off, and nothing is ever written. */
static int keylog_fd = -1;
static int keylog_failed; /* a write failed: said once */

/* One line per call, written at once with its newline: O_APPEND keeps each
 * line whole, and nothing waits in a buffer (a crash loses no key). */
static void on_keylog(const SSL *ssl, const char *line)
{
	char buf[KEYLOG_LINE_MAX];
	size_t n = strlen(line);

	if (keylog_fd < 0 || n + 1 > sizeof(buf))
		return;
	memcpy(buf, line, n);
	buf[n++] = '\n';
	if (write(keylog_fd, buf, n) != (ssize_t)n && !keylog_failed) {
		keylog_failed = 1;
		log_err("keylog", "cannot write the key log: %s", strerror(errno));
	}
}

int estgw_keylog_open(const char *path, char *err, size_t errlen)
{
	struct stat st = { 0 };
	int fd;

	estgw_keylog_close();
	fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY |
		  O_NONBLOCK, 0600);
	if (fd < 0) {
		int e = errno;
		snprintf(err, errlen, "cannot open %s for appending: %s", path, strerror(e));
		return -e;
	}
	/* An existing file keeps its mode and owner: refuse one that others
	 * could read (the keys decrypt everything captured). */
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (st.st_mode & 077) ||
	    st.st_uid != geteuid()) {
		snprintf(err, errlen, "%s must be a regular file of mode 0600 owned by "
			 "uid %u (it is mode %04o, uid %u): remove it or chmod 0600 it",
			 path, (unsigned)geteuid(), (unsigned)(st.st_mode & 07777),
			 (unsigned)st.st_uid);
		close(fd);
		return -EACCES;
	}
	keylog_fd = fd;
	keylog_failed = 0;
	return 0;
}

void estgw_keylog_close(void)
{
	if (keylog_fd >= 0)
		close(keylog_fd);
	keylog_fd = -1;
}

void estgw_keylog_attach(void *ssl_ctx)
{
	if (keylog_fd >= 0 && ssl_ctx)
		SSL_CTX_set_keylog_callback(ssl_ctx, on_keylog);
}
