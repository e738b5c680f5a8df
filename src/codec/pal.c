/* pal.c - the PAL rewriter: a bounded scanner for the XML and JSON forms
 * of RFC 8295 §2.1 (see pal.h; I3).
 *
 * One pass over the text finds each entry (<message> in XML, an object of
 * the top-level array in JSON), its package type and its URI. Text outside
 * the entries is copied as it came; an entry is copied with its URI
 * replaced, or left out. Limits: EST_PAL_MAX_ENTRIES entries, URIs of at
 * most EST_PAL_MAX_URI bytes, JSON nesting of 8, XML names of 64 bytes;
 * no DTD or CDATA (a PAL needs neither, and refusing them keeps entity
 * expansion out).
 */
#include "estgw/pal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define MAX_NAME 64
#define MAX_DEPTH 8
#define MAX_SEGS 8

/* RFC 7030 / RFC 8295 path components and the CoAP name a device uses
 * (RFC 9148 Table 1 for the RFC 7030 ones); bit: the operation must be
 * served, 0: always served; coap NULL: estgw serves no such operation. */
static const struct {
	const char *pc, *coap;
	unsigned bit;
} pcs[] = {
	{ "cacerts", "crts", 0 },
	{ "csrattrs", "att", 0 },
	{ "simpleenroll", "sen", 0 },
	{ "simplereenroll", "sren", 0 },
	{ "serverkeygen/return", "skg/return", EST_X_EN_SKG },
	{ "serverkeygen", "skg", EST_X_EN_RFC9148_SKG },
	{ "fullcmc", NULL, 0 },
	{ "pal", "pal", EST_X_EN_PAL },
	{ "eecerts", "eecerts", EST_X_EN_EECERTS },
	{ "crls", "crls", EST_X_EN_CRLS },
	{ "symmetrickeys/return", "symmetrickeys/return", EST_X_EN_SYMKEYS },
	{ "symmetrickeys", "symmetrickeys", EST_X_EN_SYMKEYS },
	{ "firmware/return", "firmware/return", EST_X_EN_FIRMWARE },
	{ "firmware", "firmware", EST_X_EN_FIRMWARE },
	{ "tamp/return", "tamp/return", EST_X_EN_TAMP },
	{ "tamp", "tamp", EST_X_EN_TAMP },
};

#define N_PCS (sizeof(pcs) / sizeof(pcs[0]))

/* Package types (RFC 8295 §2.1.1 and its IANA registry) of operations that
 * may be off. */
static unsigned type_bit(const char t[4])
{
	int n = (t[0] - '0') * 1000 + (t[1] - '0') * 100 + (t[2] - '0') * 10 +
		(t[3] - '0');

	if (n == 1)
		return EST_X_EN_PAL;
	if (n == 3)
		return EST_X_EN_EECERTS;
	if (n == 4 || n == 5)
		return EST_X_EN_CRLS;
	if (n == 20 || n == 21)
		return EST_X_EN_RFC9148_SKG;
	if (n == 22 || n == 23)
		return EST_X_EN_SKG;
	if (n == 24 || n == 25)
		return EST_X_EN_SYMKEYS;
	if (n == 26 || n == 27)
		return EST_X_EN_FIRMWARE;
	if (n >= 28 && n <= 37)
		return EST_X_EN_TAMP;
	return 0;
}

/* ---- output ------------------------------------------------------------- */

struct obuf {
	char *p;
	size_t len, cap, limit;
	int err;
};

static void put(struct obuf *b, const char *s, size_t n)
{
	if (b->err || n == 0)
		return;
	if (n > b->limit - b->len) {
		b->err = -EINVAL;
		return;
	}
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		char *p;

		while (cap < b->len + n)
			cap *= 2;
		if (cap > b->limit)
			cap = b->limit;
		p = realloc(b->p, cap);
		if (!p) {
			b->err = -ENOMEM;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
}

static void puts_(struct obuf *b, const char *s)
{
	put(b, s, strlen(s));
}

/* ---- URIs --------------------------------------------------------------- */

enum uri_fate { URI_FOREIGN, URI_MAPPED, URI_OFF };

static int label_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '~' ||
	       c == '-';
}

struct seg {
	const char *p;
	size_t n;
};

static int seg_eq(const struct seg *s, const char *w, size_t n)
{
	return s->n == n && memcmp(s->p, w, n) == 0;
}

/* The PC at segs[at..]: its row and how many segments it took. */
static int find_pc(const struct seg *segs, size_t nseg, size_t at, size_t *used)
{
	for (size_t i = 0; i < N_PCS; i++) {
		const char *pc = pcs[i].pc, *slash = strchr(pc, '/');
		size_t n1 = slash ? (size_t)(slash - pc) : strlen(pc);

		if (at >= nseg || !seg_eq(&segs[at], pc, n1))
			continue;
		if (slash && !(at + 1 < nseg &&
			       seg_eq(&segs[at + 1], slash + 1, strlen(slash + 1))))
			continue;
		*used = slash ? 2 : 1;
		return (int)i;
	}
	return -1;
}

/* @p u (@p n bytes, unescaped) under the CA's base: its CoAP form in @p b
 * (text to be escaped by the caller's form: @p esc). */
static enum uri_fate map_uri(const char *u, size_t n, const struct est_pal_opts *o,
			     struct obuf *b)
{
	size_t blen = strlen(o->up_base), i = 0, nseg = 0, at = 0, used = 0;
	struct seg segs[MAX_SEGS] = { { 0 } };
	const char *rest, *end, *q;
	int row;

	while (blen && o->up_base[blen - 1] == '/')
		blen--;
	if (n <= blen + 1 || memcmp(u, o->up_base, blen) != 0 || u[blen] != '/')
		return URI_FOREIGN;
	rest = u + blen + 1;
	end = u + n;
	for (q = rest; q < end && *q != '?' && *q != '#'; q++)
		;
	while (rest + i < q) {
		const char *s = rest + i;
		size_t l = 0;

		while (s + l < q && s[l] != '/')
			l++;
		if (l == 0 || nseg == MAX_SEGS)
			return URI_FOREIGN;
		segs[nseg].p = s;
		segs[nseg++].n = l;
		i += l + (s + l < q);
	}
	row = find_pc(segs, nseg, 0, &used);
	if (row < 0) {
		if (nseg < 2 || segs[0].n > 64)
			return URI_FOREIGN;
		for (size_t k = 0; k < segs[0].n; k++)
			if (!label_char(segs[0].p[k]))
				return URI_FOREIGN;
		at = 1;
		row = find_pc(segs, nseg, 1, &used);
		if (row < 0)
			return URI_FOREIGN;
	}
	if (!pcs[row].coap || (pcs[row].bit && !(o->enabled & pcs[row].bit)))
		return URI_OFF;
	puts_(b, o->gw_base);
	if (at) {
		puts_(b, "/");
		put(b, segs[0].p, segs[0].n);
	}
	puts_(b, "/");
	puts_(b, pcs[row].coap);
	/* the tail after the PC and the query, verbatim (RFC 8295 §2.1.3) */
	if (at + used < nseg)
		put(b, segs[at + used].p - 1, (size_t)(end - (segs[at + used].p - 1)));
	else
		put(b, q, (size_t)(end - q));
	return URI_MAPPED;
}

/* ---- one entry ---------------------------------------------------------- */

struct entry {
	size_t start, end;      /* the whole entry in the input */
	int have_type;
	char type[4];
	int have_uri;
	size_t uri_s, uri_e;    /* the raw URI text (without JSON quotes) */
};

static int type_ok(const char *p, size_t n, char out[4])
{
	if (n != 4)
		return 0;
	for (size_t i = 0; i < 4; i++) {
		if (p[i] < '0' || p[i] > '9')
			return 0;
		out[i] = p[i];
	}
	return 1;
}

struct scan {
	const char *in;
	size_t len, i;
	const struct est_pal_opts *o;
	struct est_pal_stats *st;
	struct obuf out;
	int json;
};

/* JSON string content (@p p, @p n) unescaped into @p dst; 0, or -EINVAL
 * (malformed), or 1 when it holds characters outside printable ASCII
 * (then it is never rewritten). */
static int json_unescape(const char *p, size_t n, char *dst, size_t cap, size_t *dn)
{
	size_t k = 0;
	int odd = 0;

	for (size_t i = 0; i < n; i++) {
		char c = p[i];

		if (k == cap)
			return -EINVAL;
		if (c != '\\') {
			if ((unsigned char)c < 0x20 || (unsigned char)c >= 0x7f)
				odd = 1;
			dst[k++] = c;
			continue;
		}
		if (++i == n)
			return -EINVAL;
		switch (p[i]) {
		case '"': case '\\': case '/': dst[k++] = p[i]; break;
		case 'b': case 'f': case 'n': case 'r': case 't':
			odd = 1;
			dst[k++] = '?';
			break;
		case 'u': {
			unsigned v = 0;

			if (n - i < 5)
				return -EINVAL;
			for (int d = 1; d <= 4; d++) {
				char h = p[i + d];
				v <<= 4;
				if (h >= '0' && h <= '9') v |= (unsigned)(h - '0');
				else if (h >= 'a' && h <= 'f') v |= (unsigned)(h - 'a' + 10);
				else if (h >= 'A' && h <= 'F') v |= (unsigned)(h - 'A' + 10);
				else return -EINVAL;
			}
			i += 4;
			if (v < 0x20 || v >= 0x7f)
				odd = 1;
			dst[k++] = (v >= 0x20 && v < 0x7f) ? (char)v : '?';
			break;
		}
		default:
			return -EINVAL;
		}
	}
	*dn = k;
	return odd;
}

/* Write @p s into @p b as JSON string content. */
static void json_escape(struct obuf *b, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '"' || s[i] == '\\')
			put(b, "\\", 1);
		put(b, s + i, 1);
	}
}

/* What happens to @p e: 0 keep as is, 1 keep with the URI in @p nu,
 * 2 drop. */
static int decide(struct scan *sc, const struct entry *e, struct obuf *nu)
{
	unsigned bit = type_bit(e->type);
	char raw[EST_PAL_MAX_URI];
	const char *u = sc->in + e->uri_s;
	size_t n = e->uri_e - e->uri_s;
	struct obuf mapped = { .limit = 2 * EST_PAL_MAX_URI + 256 };
	enum uri_fate f;
	int rc = 0;

	if (bit && !(sc->o->enabled & bit))
		return 2;
	if (!e->have_uri)
		return 0;
	if (sc->json) {
		size_t dn = 0;
		int odd = json_unescape(u, n, raw, sizeof(raw), &dn);

		if (odd < 0)
			return -EINVAL;
		if (odd) {
			sc->st->foreign++;
			return 0;
		}
		u = raw;
		n = dn;
	}
	f = map_uri(u, n, sc->o, &mapped);
	if (mapped.err) {
		free(mapped.p);
		return mapped.err;
	}
	if (f == URI_OFF) {
		rc = 2;
	} else if (f == URI_FOREIGN) {
		sc->st->foreign++;
	} else if (sc->o->rewrite) {
		if (sc->json)
			json_escape(nu, mapped.p, mapped.len);
		else
			put(nu, mapped.p, mapped.len);
		rc = nu->err ? nu->err : 1;
	}
	free(mapped.p);
	return rc;
}

/* Copy the input up to @p e's start, then @p e as decided. */
static int emit_entry(struct scan *sc, size_t *copied, const struct entry *e,
		      int first_kept_sep)
{
	struct obuf nu = { .limit = 6 * EST_PAL_MAX_URI + 256 };
	int d;

	if (!e->have_type)
		return -EINVAL; /* RFC 8295 §2.1.1: type MUST */
	d = decide(sc, e, &nu);
	if (d < 0) {
		free(nu.p);
		return d;
	}
	if (!sc->json)
		put(&sc->out, sc->in + *copied, e->start - *copied);
	if (d == 2) {
		if (!sc->st->dropped)
			memcpy(sc->st->first_dropped, e->type, 4);
		sc->st->dropped++;
	} else {
		if (sc->json && first_kept_sep)
			put(&sc->out, ",", 1);
		if (d == 1) {
			put(&sc->out, sc->in + e->start, e->uri_s - e->start);
			put(&sc->out, nu.p, nu.len);
			put(&sc->out, sc->in + e->uri_e, e->end - e->uri_e);
			sc->st->rewritten++;
		} else {
			put(&sc->out, sc->in + e->start, e->end - e->start);
		}
	}
	*copied = e->end;
	free(nu.p);
	return d == 2 ? 0 : 1;
}

/* ---- XML ---------------------------------------------------------------- */

static int is_ws(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static const char *find(const char *p, const char *end, const char *w)
{
	size_t n = strlen(w);

	for (; (size_t)(end - p) >= n; p++)
		if (memcmp(p, w, n) == 0)
			return p;
	return NULL;
}

static void trim(const char *in, size_t *s, size_t *e)
{
	while (*s < *e && is_ws(in[*s]))
		(*s)++;
	while (*e > *s && is_ws(in[*e - 1]))
		(*e)--;
}

/* One tag at sc->i ('<'): its local name, closing or not; i moves past. */
static int xml_tag(struct scan *sc, const char **name, size_t *nlen, int *close,
		   int *selfclose)
{
	const char *in = sc->in, *end = in + sc->len, *p = in + sc->i + 1, *q;
	char quote = 0;

	if (p < end && *p == '?') {
		q = find(p, end, "?>");
		if (!q)
			return -EINVAL;
		sc->i = (size_t)(q + 2 - in);
		*name = NULL;
		return 0;
	}
	if ((size_t)(end - p) >= 3 && memcmp(p, "!--", 3) == 0) {
		q = find(p + 3, end, "-->");
		if (!q)
			return -EINVAL;
		sc->i = (size_t)(q + 3 - in);
		*name = NULL;
		return 0;
	}
	if (p < end && *p == '!')
		return -EINVAL; /* DOCTYPE, CDATA: not in a PAL */
	*close = p < end && *p == '/';
	p += *close;
	q = p;
	while (q < end && !is_ws(*q) && *q != '>' && *q != '/' && *q != '<')
		q++;
	if (q == p || q - p > MAX_NAME)
		return -EINVAL;
	*name = p;
	*nlen = (size_t)(q - p);
	for (const char *c = p; c < q; c++)
		if (*c == ':') {
			*name = c + 1;
			*nlen = (size_t)(q - c - 1);
		}
	for (; q < end; q++) {
		if (quote) {
			if (*q == quote)
				quote = 0;
		} else if (*q == '"' || *q == '\'') {
			quote = *q;
		} else if (*q == '>') {
			break;
		} else if (*q == '<') {
			return -EINVAL;
		}
	}
	if (q == end)
		return -EINVAL;
	*selfclose = !*close && q[-1] == '/';
	sc->i = (size_t)(q + 1 - in);
	return 0;
}

static int name_is(const char *n, size_t l, const char *w)
{
	return l == strlen(w) && memcmp(n, w, l) == 0;
}

static int xml_scan(struct scan *sc)
{
	struct entry e = { 0 };
	size_t copied = 0, text_s = 0;
	int in_msg = 0, text = 0; /* 1: in <type>, 2: in <uri> */

	while (sc->i < sc->len) {
		const char *name;
		size_t nl = 0, at = sc->i;
		int close = 0, selfc = 0, rc;

		if (sc->in[sc->i] != '<') {
			sc->i++;
			continue;
		}
		if ((rc = xml_tag(sc, &name, &nl, &close, &selfc)) != 0)
			return rc;
		if (!name)
			continue;
		if (text && !(close && name_is(name, nl, text == 1 ? "type" : "uri")))
			return -EINVAL; /* markup inside <type> or <uri> */
		if (!close && name_is(name, nl, "message")) {
			if (in_msg || selfc || sc->st->entries == EST_PAL_MAX_ENTRIES)
				return -EINVAL;
			in_msg = 1;
			sc->st->entries++;
			memset(&e, 0, sizeof(e));
			e.start = at;
		} else if (!close && in_msg && !selfc &&
			   (name_is(name, nl, "type") || name_is(name, nl, "uri"))) {
			text = name_is(name, nl, "type") ? 1 : 2;
			if ((text == 1 && e.have_type) || (text == 2 && e.have_uri))
				return -EINVAL;
			text_s = sc->i;
		} else if (close && text) {
			size_t s = text_s, t = at;

			trim(sc->in, &s, &t);
			if (text == 1) {
				if (!type_ok(sc->in + s, t - s, e.type))
					return -EINVAL;
				e.have_type = 1;
			} else {
				if (t - s > EST_PAL_MAX_URI)
					return -EINVAL;
				e.have_uri = 1;
				e.uri_s = s;
				e.uri_e = t;
			}
			text = 0;
		} else if (close && name_is(name, nl, "message")) {
			if (!in_msg)
				return -EINVAL;
			in_msg = 0;
			e.end = sc->i;
			if ((rc = emit_entry(sc, &copied, &e, 0)) < 0)
				return rc;
		}
	}
	if (in_msg || text)
		return -EINVAL;
	put(&sc->out, sc->in + copied, sc->len - copied);
	return sc->out.err;
}

/* ---- JSON --------------------------------------------------------------- */

static void json_ws(struct scan *sc)
{
	while (sc->i < sc->len && is_ws(sc->in[sc->i]))
		sc->i++;
}

/* A string at sc->i ('"'): its content in [*s, *e). */
static int json_string(struct scan *sc, size_t *s, size_t *e)
{
	size_t i = sc->i + 1;

	if (sc->i >= sc->len || sc->in[sc->i] != '"')
		return -EINVAL;
	*s = i;
	for (; i < sc->len; i++) {
		char c = sc->in[i];
		if (c == '\\') {
			i++;
			continue;
		}
		if ((unsigned char)c < 0x20)
			return -EINVAL;
		if (c == '"')
			break;
	}
	if (i >= sc->len)
		return -EINVAL;
	*e = i;
	sc->i = i + 1;
	return 0;
}

static int json_value(struct scan *sc, int depth, const char *key, size_t klen,
		      struct entry *e);

static int json_members(struct scan *sc, int depth, struct entry *e)
{
	sc->i++; /* '{' */
	json_ws(sc);
	if (sc->i < sc->len && sc->in[sc->i] == '}') {
		sc->i++;
		return 0;
	}
	for (;;) {
		size_t ks, ke;
		int rc;

		json_ws(sc);
		if ((rc = json_string(sc, &ks, &ke)) != 0)
			return rc;
		json_ws(sc);
		if (sc->i >= sc->len || sc->in[sc->i] != ':')
			return -EINVAL;
		sc->i++;
		json_ws(sc);
		if ((rc = json_value(sc, depth + 1, sc->in + ks, ke - ks, e)) != 0)
			return rc;
		json_ws(sc);
		if (sc->i >= sc->len)
			return -EINVAL;
		if (sc->in[sc->i] == '}') {
			sc->i++;
			return 0;
		}
		if (sc->in[sc->i] != ',')
			return -EINVAL;
		sc->i++;
	}
}

static int json_elements(struct scan *sc, int depth, struct entry *e)
{
	sc->i++; /* '[' */
	json_ws(sc);
	if (sc->i < sc->len && sc->in[sc->i] == ']') {
		sc->i++;
		return 0;
	}
	for (;;) {
		int rc;

		json_ws(sc);
		if ((rc = json_value(sc, depth + 1, NULL, 0, e)) != 0)
			return rc;
		json_ws(sc);
		if (sc->i >= sc->len)
			return -EINVAL;
		if (sc->in[sc->i] == ']') {
			sc->i++;
			return 0;
		}
		if (sc->in[sc->i] != ',')
			return -EINVAL;
		sc->i++;
	}
}

static int json_value(struct scan *sc, int depth, const char *key, size_t klen,
		      struct entry *e)
{
	size_t s, t, st;
	char c;
	int rc;

	if (depth > MAX_DEPTH || sc->i >= sc->len)
		return -EINVAL;
	c = sc->in[sc->i];
	if (c == '{')
		return json_members(sc, depth, e);
	if (c == '[')
		return json_elements(sc, depth, e);
	if (c == '"') {
		if ((rc = json_string(sc, &s, &t)) != 0)
			return rc;
		if (key && name_is(key, klen, "type") && depth == 1) {
			if (e->have_type || !type_ok(sc->in + s, t - s, e->type))
				return -EINVAL;
			e->have_type = 1;
		} else if (key && name_is(key, klen, "uri")) {
			if (e->have_uri || t - s > 6 * EST_PAL_MAX_URI)
				return -EINVAL;
			e->have_uri = 1;
			e->uri_s = s;
			e->uri_e = t;
		}
		return 0;
	}
	st = sc->i;
	while (sc->i < sc->len && sc->in[sc->i] &&
	       strchr("+-.0123456789eEtrufalsn", sc->in[sc->i]))
		sc->i++;
	return sc->i > st ? 0 : -EINVAL;
}

static int json_scan(struct scan *sc)
{
	size_t copied;
	int kept = 0, rc;

	json_ws(sc);
	if (sc->i >= sc->len || sc->in[sc->i] != '[')
		return -EINVAL;
	put(&sc->out, sc->in, sc->i + 1);
	sc->i++;
	json_ws(sc);
	if (sc->i < sc->len && sc->in[sc->i] == ']')
		goto done;
	for (;;) {
		struct entry e = { 0 };

		json_ws(sc);
		if (sc->i >= sc->len || sc->in[sc->i] != '{' ||
		    sc->st->entries == EST_PAL_MAX_ENTRIES)
			return -EINVAL;
		sc->st->entries++;
		e.start = sc->i;
		if ((rc = json_members(sc, 0, &e)) != 0)
			return rc;
		e.end = sc->i;
		copied = e.start;
		if ((rc = emit_entry(sc, &copied, &e, kept)) < 0)
			return rc;
		kept += rc;
		json_ws(sc);
		if (sc->i < sc->len && sc->in[sc->i] == ',') {
			sc->i++;
			continue;
		}
		if (sc->i < sc->len && sc->in[sc->i] == ']')
			break;
		return -EINVAL;
	}
done:
	copied = sc->i; /* ']' and what follows it, as it came */
	sc->i++;
	json_ws(sc);
	if (sc->i != sc->len)
		return -EINVAL;
	put(&sc->out, sc->in + copied, sc->len - copied);
	return sc->out.err;
}

int est_pal_rewrite(const char *in, size_t len, int json,
		    const struct est_pal_opts *o, char **out, size_t *outlen,
		    struct est_pal_stats *st)
{
	struct est_pal_stats dummy;
	struct scan sc = { .in = in, .len = len, .o = o, .json = json };
	int rc;

	if (!out || !outlen || !o || !o->up_base || !o->gw_base || (!in && len))
		return -EINVAL;
	*out = NULL;
	*outlen = 0;
	sc.st = st ? st : &dummy;
	memset(sc.st, 0, sizeof(*sc.st));
	sc.out.limit = len + EST_PAL_MAX_ENTRIES * (strlen(o->gw_base) + 6 * EST_PAL_MAX_URI) + 16;
	rc = json ? json_scan(&sc) : xml_scan(&sc);
	if (rc == 0 && !sc.out.p)
		put(&sc.out, "", 0);
	if (rc) {
		free(sc.out.p);
		return rc;
	}
	if (!sc.out.p) { /* an empty XML text: nothing to give back but "" */
		sc.out.p = malloc(1);
		if (!sc.out.p)
			return -ENOMEM;
	}
	*out = sc.out.p;
	*outlen = sc.out.len;
	return 0;
}
