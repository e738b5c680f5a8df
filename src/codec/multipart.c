/* multipart.c - media types, parameters and multipart/mixed bodies
 * (RFC 9110 8.3, RFC 2046 5.1; docs/conformance.md B6, F2, G6).
 *
 * Owns: splitting a Content-Type value, reading one parameter of it, and
 * cutting an upstream /serverkeygen answer into its body parts.
 * Must not: allocate, log or copy part contents: every result is a slice
 * into the caller's buffer. The parser is one linear pass over lines with
 * fixed bounds on parts and header fields; nothing is taken on trust from
 * the input but the bytes themselves.
 */
#include "estgw/skg.h"

#include <errno.h>
#include <string.h>
#include <strings.h>

/* ---- media types -------------------------------------------------------- */

static int is_ws(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/** RFC 9110 5.6.2 tchar. */
static int is_tchar(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || (c && strchr("!#$%&'*+-.^_`|~", c));
}

static size_t token_len(const char *p, const char *end)
{
	size_t n = 0;

	while (p + n < end && is_tchar(p[n]))
		n++;
	return n;
}

int est_mime_type(const char *v, size_t len, struct est_slice *type,
		  struct est_slice *params)
{
	const char *p = v, *end = v + len, *start;
	size_t n;

	if (!v || !type || !params)
		return -EINVAL;
	while (p < end && is_ws(*p))
		p++;
	start = p;
	n = token_len(p, end);
	if (n == 0 || p + n == end || p[n] != '/')
		return -EINVAL;
	p += n + 1;
	n = token_len(p, end);
	if (n == 0)
		return -EINVAL;
	p += n;
	type->ptr = (const uint8_t *)start;
	type->len = (size_t)(p - start);
	while (p < end && is_ws(*p))
		p++;
	if (p < end && *p != ';')
		return -EINVAL;
	while (end > p && is_ws(end[-1]))
		end--;
	params->ptr = (const uint8_t *)p;
	params->len = (size_t)(end - p);
	return 0;
}

int est_mime_is(const struct est_slice *type, const char *want)
{
	size_t n = strlen(want);

	return type && type->len == n &&
	       strncasecmp((const char *)type->ptr, want, n) == 0;
}

/** One parameter value at @p p: a token or a quoted-string, unquoted into
 *  @p out when @p out is not NULL. Moves *pp past it. */
static int param_value(const char **pp, const char *end, char *out,
		       size_t outsize, size_t *outlen)
{
	const char *p = *pp;
	size_t n = 0;

	if (p < end && *p == '"') {
		for (p++; p < end && *p != '"'; p++, n++) {
			if (*p == '\\' && ++p == end)
				return -EINVAL;
			if (out && n + 1 < outsize)
				out[n] = *p;
		}
		if (p == end)
			return -EINVAL; /* no closing quote */
		p++;
	} else {
		n = token_len(p, end);
		if (n == 0)
			return -EINVAL;
		if (out && n < outsize)
			memcpy(out, p, n);
		p += n;
	}
	*pp = p;
	if (!out)
		return 0;
	if (n >= outsize)
		return -ENOSPC;
	out[n] = '\0';
	*outlen = n;
	return 0;
}

int est_mime_param(const struct est_slice *params, const char *name,
		   char *out, size_t outsize, size_t *outlen)
{
	const char *p, *end;
	size_t n, nlen;
	int found = 0, rc, ret = -ENOENT;

	if (!params || !name || !out || !outsize || !outlen)
		return -EINVAL;
	p = (const char *)params->ptr;
	end = p + params->len;
	nlen = strlen(name);
	while (p < end) {
		while (p < end && (is_ws(*p) || *p == ';'))
			p++; /* empty parameters (";;") are tolerated */
		if (p == end)
			break;
		n = token_len(p, end);
		if (n == 0)
			return -EINVAL;
		int match = n == nlen && strncasecmp(p, name, n) == 0;
		p += n;
		while (p < end && is_ws(*p))
			p++;
		if (p == end || *p != '=')
			return -EINVAL;
		for (p++; p < end && is_ws(*p);)
			p++;
		if (match && found)
			return -EINVAL; /* named twice: ambiguous */
		rc = param_value(&p, end, match ? out : NULL, outsize, outlen);
		if (rc == -EINVAL)
			return rc;
		if (match) {
			found = 1;
			ret = rc;
		}
		while (p < end && is_ws(*p))
			p++;
		if (p < end && *p != ';')
			return -EINVAL;
	}
	return ret;
}

/* ---- multipart/mixed ---------------------------------------------------- */

/** RFC 2046 5.1.1 bchars. */
static int is_bchar(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || (c && strchr("'()+_,-./:=? ", c));
}

int est_mp_boundary_ok(const char *b, size_t len)
{
	if (!b || len == 0 || len > EST_MP_BOUNDARY_MAX || b[len - 1] == ' ')
		return 0;
	for (size_t i = 0; i < len; i++)
		if (!is_bchar(b[i]))
			return 0;
	return 1;
}

/** The body and its boundary, for the line scanner. */
struct mp {
	const uint8_t *p, *end;
	const char *b;
	size_t blen;
};

enum delim { NOT_DELIM, DELIM, CLOSE_DELIM };

/** Is the line at @p ls a delimiter line ("--" boundary [--] padding EOL)?
 *  *next gets the start of the following line (or the end). */
static enum delim delim_at(const struct mp *m, const uint8_t *ls,
			   const uint8_t **next)
{
	const uint8_t *p = ls;
	enum delim kind = DELIM;

	if ((size_t)(m->end - p) < 2 + m->blen || p[0] != '-' || p[1] != '-' ||
	    memcmp(p + 2, m->b, m->blen) != 0)
		return NOT_DELIM;
	p += 2 + m->blen;
	if (m->end - p >= 2 && p[0] == '-' && p[1] == '-') {
		kind = CLOSE_DELIM;
		p += 2;
	}
	while (p < m->end && (*p == ' ' || *p == '\t'))
		p++;
	if (p < m->end && *p == '\r')
		p++;
	if (p < m->end && *p != '\n')
		return NOT_DELIM; /* e.g. a longer boundary that starts alike */
	*next = p < m->end ? p + 1 : p;
	return kind;
}

/** Find the next delimiter line at or after the line starting at @p from.
 *  *ls gets its start, *next the line after it. */
static enum delim next_delim(const struct mp *m, const uint8_t *from,
			     const uint8_t **ls, const uint8_t **next)
{
	const uint8_t *p = from, *lf;
	enum delim d;

	while (p < m->end) {
		d = delim_at(m, p, next);
		if (d != NOT_DELIM) {
			*ls = p;
			return d;
		}
		lf = memchr(p, '\n', (size_t)(m->end - p));
		if (!lf)
			break;
		p = lf + 1;
	}
	return NOT_DELIM;
}

/** The header fields of one part that matter, as they are read. */
struct part_hdrs {
	struct est_slice ct, cte;
	struct est_slice *cur; /* the field a folded line continues, or NULL */
	int folded_ok;         /* the previous line was a header field */
	size_t count;
};

static struct est_slice trim(const uint8_t *p, const uint8_t *end)
{
	struct est_slice s;

	while (p < end && is_ws((char)*p))
		p++;
	while (end > p && is_ws((char)end[-1]))
		end--;
	s.ptr = p;
	s.len = (size_t)(end - p);
	return s;
}

static int name_is(const uint8_t *p, size_t n, const char *want)
{
	return n == strlen(want) && strncasecmp((const char *)p, want, n) == 0;
}

/** One header line [p, eol) (line end already cut off). */
static int header_line(struct part_hdrs *h, const uint8_t *p,
		       const uint8_t *eol, const char **why)
{
	const uint8_t *colon, *nend;
	struct est_slice *slot;

	if (*p == ' ' || *p == '\t') { /* folded: continues the last field */
		if (!h->folded_ok) {
			*why = "multipart part starts with a folded header line";
			return -EINVAL;
		}
		if (h->cur)
			h->cur->len = (size_t)(eol - h->cur->ptr);
		return 0;
	}
	if (++h->count > EST_MP_MAX_HEADERS) {
		*why = "multipart part has too many header fields";
		return -E2BIG;
	}
	colon = memchr(p, ':', (size_t)(eol - p));
	nend = colon;
	while (colon && nend > p && (nend[-1] == ' ' || nend[-1] == '\t'))
		nend--; /* RFC 5322 obsolete syntax allows WSP before ':' */
	if (!colon || nend == p ||
	    token_len((const char *)p, (const char *)nend) != (size_t)(nend - p)) {
		*why = "multipart part has a malformed header line";
		return -EINVAL;
	}
	slot = name_is(p, (size_t)(nend - p), "content-type") ? &h->ct
	       : name_is(p, (size_t)(nend - p), "content-transfer-encoding")
		       ? &h->cte
		       : NULL;
	if (slot && slot->ptr) {
		*why = "multipart part repeats a Content header";
		return -EINVAL;
	}
	if (slot) {
		slot->ptr = colon + 1;
		slot->len = (size_t)(eol - colon - 1);
	}
	h->cur = slot;
	h->folded_ok = 1;
	return 0;
}

/** Cut the line ending at @p lf (the '\n') off: CR before it too. */
static const uint8_t *line_end(const uint8_t *ls, const uint8_t *lf)
{
	return (lf > ls && lf[-1] == '\r') ? lf - 1 : lf;
}

static int part_fill(struct est_mp_part *out, struct part_hdrs *h,
		     const char **why)
{
	struct est_slice ct;

	memset(out, 0, sizeof(*out));
	if (h->ct.ptr) {
		ct = trim(h->ct.ptr, h->ct.ptr + h->ct.len);
		if (est_mime_type((const char *)ct.ptr, ct.len, &out->type,
				  &out->params) != 0) {
			*why = "multipart part has a malformed Content-Type";
			return -EINVAL;
		}
	}
	if (h->cte.ptr)
		out->cte = trim(h->cte.ptr, h->cte.ptr + h->cte.len);
	return 0;
}

/** Parse one part in [s, e): header lines, an empty line, the content. A
 *  header block that runs to @p e (no empty line) leaves an empty body. */
static int parse_part(const uint8_t *s, const uint8_t *e,
		      struct est_mp_part *out, const char **why)
{
	struct part_hdrs h;
	const uint8_t *p = s, *lf, *eol;
	int rc;

	memset(&h, 0, sizeof(h));
	while (p < e) {
		lf = memchr(p, '\n', (size_t)(e - p));
		eol = line_end(p, lf ? lf : e);
		if (eol == p) { /* the empty line: the content follows */
			rc = part_fill(out, &h, why);
			out->body.ptr = lf ? lf + 1 : e;
			out->body.len = (size_t)(e - out->body.ptr);
			return rc;
		}
		rc = header_line(&h, p, eol, why);
		if (rc)
			return rc;
		if (!lf) {
			*why = "multipart part has no empty line after its headers";
			return -EINVAL;
		}
		p = lf + 1;
	}
	rc = part_fill(out, &h, why);
	out->body.ptr = e;
	out->body.len = 0;
	return rc;
}

/** Where a part's content ends: before the line break of the delimiter
 *  line at @p ls (never before @p s). */
static const uint8_t *content_end(const uint8_t *s, const uint8_t *ls)
{
	const uint8_t *e = ls;

	if (e > s && e[-1] == '\n')
		e--;
	if (e > s && e[-1] == '\r')
		e--;
	return e;
}

static int fail(const char **why, const char *reason, int rc)
{
	*why = reason;
	return rc;
}

int est_multipart_parse(const uint8_t *body, size_t len, const char *boundary,
			size_t blen, struct est_mp_part *parts,
			size_t maxparts, size_t *n, const char **why)
{
	const char *ignored;
	struct mp m = { body, body + len, boundary, blen };
	const uint8_t *ls, *next, *s;
	enum delim d;
	size_t count = 0;
	int rc;

	if (!why)
		why = &ignored;
	*why = NULL;
	if (!body || !parts || !n || !est_mp_boundary_ok(boundary, blen))
		return fail(why, "multipart boundary invalid", -EINVAL);
	d = next_delim(&m, body, &ls, &next);
	if (d == NOT_DELIM)
		return fail(why, "multipart without opening boundary", -EINVAL);
	if (d == CLOSE_DELIM)
		return fail(why, "multipart without body parts", -EINVAL);
	for (;;) {
		s = next;
		if (s == m.end)
			return fail(why, "multipart without closing boundary",
				    -EINVAL);
		d = next_delim(&m, s, &ls, &next);
		if (d == NOT_DELIM)
			return fail(why, "multipart without closing boundary",
				    -EINVAL);
		if (count == maxparts)
			return fail(why, "multipart has too many parts", -E2BIG);
		rc = parse_part(s, content_end(s, ls), &parts[count], why);
		if (rc)
			return rc;
		count++;
		if (d == CLOSE_DELIM)
			break; /* the epilogue is ignored */
	}
	*n = count;
	return 0;
}
