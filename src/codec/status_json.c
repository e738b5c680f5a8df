/* status_json.c - the vs/es status telemetry as JSON (CF 50, RFC 8995 5.7,
 * 5.9.4; H3 in docs/conformance.md): a bounded recursive-descent reader for
 * one object.
 * Pure. Nesting depth is fixed here (STATUS_JSON_DEPTH), never taken from
 * the input; strings are checked (no control characters, valid escapes)
 * but not unescaped: "reason" is a slice of the raw text for the log. */
#include "estgw/voucher.h"

#include <errno.h>
#include <string.h>

#define STATUS_JSON_DEPTH 8

struct jr {
	const uint8_t *p, *end;
};

static void ws(struct jr *r)
{
	while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r'))
		r->p++;
}

static int hex4(const uint8_t *p)
{
	for (int i = 0; i < 4; i++)
		if (!((p[i] >= '0' && p[i] <= '9') || ((p[i] | 0x20) >= 'a' && (p[i] | 0x20) <= 'f')))
			return 0;
	return 1;
}

/* A string; *s gets the bytes between the quotes (escapes left as is). */
static int jstring(struct jr *r, struct est_slice *s)
{
	if (r->p >= r->end || *r->p != '"')
		return -EINVAL;
	const uint8_t *start = ++r->p;
	while (r->p < r->end && *r->p != '"') {
		if (*r->p < 0x20)
			return -EINVAL;
		if (*r->p == '\\') {
			if (r->end - r->p < 2)
				return -EINVAL;
			uint8_t e = r->p[1];
			if (e == 'u') {
				if (r->end - r->p < 6 || !hex4(r->p + 2))
					return -EINVAL;
				r->p += 6;
				continue;
			}
			if (!strchr("\"\\/bfnrt", e) || e == 0)
				return -EINVAL;
			r->p += 2;
			continue;
		}
		r->p++;
	}
	if (r->p >= r->end)
		return -EINVAL;
	s->ptr = start;
	s->len = (size_t)(r->p - start);
	r->p++;
	return 0;
}

static int lit(struct jr *r, const char *w)
{
	size_t n = strlen(w);

	if ((size_t)(r->end - r->p) < n || memcmp(r->p, w, n) != 0)
		return 0;
	r->p += n;
	return 1;
}

/* A number (RFC 8259 6); *uint set when it is a plain non-negative integer. */
static int jnumber(struct jr *r, int *is_uint, uint64_t *v)
{
	const uint8_t *s = r->p;
	int digits = 0, frac = 0;

	*v = 0;
	if (r->p < r->end && *r->p == '-')
		r->p++;
	if (r->p < r->end && *r->p == '0') {
		r->p++;
		digits = 1;
	} else {
		while (r->p < r->end && *r->p >= '0' && *r->p <= '9') {
			if (digits < 19)
				*v = *v * 10 + (uint64_t)(*r->p - '0');
			digits++;
			r->p++;
		}
	}
	if (!digits)
		return -EINVAL;
	if (r->p < r->end && *r->p == '.') {
		r->p++;
		frac = 1;
		if (r->p >= r->end || *r->p < '0' || *r->p > '9')
			return -EINVAL;
		while (r->p < r->end && *r->p >= '0' && *r->p <= '9')
			r->p++;
	}
	if (r->p < r->end && (*r->p | 0x20) == 'e') {
		r->p++;
		frac = 1;
		if (r->p < r->end && (*r->p == '+' || *r->p == '-'))
			r->p++;
		if (r->p >= r->end || *r->p < '0' || *r->p > '9')
			return -EINVAL;
		while (r->p < r->end && *r->p >= '0' && *r->p <= '9')
			r->p++;
	}
	*is_uint = !frac && s[0] != '-' && digits <= 19;
	return 0;
}

enum jtype { J_OBJECT, J_ARRAY, J_STRING, J_NUMBER, J_TRUE, J_FALSE, J_NULL };

struct jval {
	enum jtype type;
	struct est_slice str;
	int is_uint;
	uint64_t num;
};

static int jvalue(struct jr *r, int depth, struct jval *v);

static int jcontainer(struct jr *r, int depth, int object)
{
	struct jval v;
	struct est_slice key;
	int rc;

	if (depth >= STATUS_JSON_DEPTH)
		return -EINVAL;
	r->p++; /* '{' or '[' */
	ws(r);
	if (r->p < r->end && *r->p == (object ? '}' : ']')) {
		r->p++;
		return 0;
	}
	for (;;) {
		ws(r);
		if (object) {
			if ((rc = jstring(r, &key)) != 0)
				return rc;
			ws(r);
			if (r->p >= r->end || *r->p++ != ':')
				return -EINVAL;
		}
		if ((rc = jvalue(r, depth + 1, &v)) != 0)
			return rc;
		ws(r);
		if (r->p >= r->end)
			return -EINVAL;
		if (*r->p == ',') {
			r->p++;
			continue;
		}
		if (*r->p++ != (object ? '}' : ']'))
			return -EINVAL;
		return 0;
	}
}

static int jvalue(struct jr *r, int depth, struct jval *v)
{
	ws(r);
	memset(v, 0, sizeof(*v));
	if (r->p >= r->end)
		return -EINVAL;
	switch (*r->p) {
	case '{':
		v->type = J_OBJECT;
		return jcontainer(r, depth, 1);
	case '[':
		v->type = J_ARRAY;
		return jcontainer(r, depth, 0);
	case '"':
		v->type = J_STRING;
		return jstring(r, &v->str);
	case 't':
		v->type = J_TRUE;
		return lit(r, "true") ? 0 : -EINVAL;
	case 'f':
		v->type = J_FALSE;
		return lit(r, "false") ? 0 : -EINVAL;
	case 'n':
		v->type = J_NULL;
		return lit(r, "null") ? 0 : -EINVAL;
	default:
		v->type = J_NUMBER;
		return jnumber(r, &v->is_uint, &v->num);
	}
}

static int is_key(const struct est_slice *k, const char *name)
{
	return k->len == strlen(name) && memcmp(k->ptr, name, k->len) == 0;
}

int brski_status_decode_json(const uint8_t *p, size_t len, struct brski_status *out)
{
	struct jr r = { p, p + len };
	int have_version = 0, have_status = 0, rc;

	memset(out, 0, sizeof(*out));
	if (!p || len == 0)
		return -EINVAL;
	ws(&r);
	if (r.p >= r.end || *r.p != '{')
		return -EINVAL;
	r.p++;
	ws(&r);
	if (r.p < r.end && *r.p == '}')
		return -EINVAL; /* version and status missing */
	for (;;) {
		struct est_slice key;
		struct jval v;
		ws(&r);
		if ((rc = jstring(&r, &key)) != 0)
			return rc;
		ws(&r);
		if (r.p >= r.end || *r.p++ != ':')
			return -EINVAL;
		if ((rc = jvalue(&r, 1, &v)) != 0)
			return rc;
		if (is_key(&key, "version")) {
			if (have_version || v.type != J_NUMBER || !v.is_uint)
				return -EINVAL;
			out->version = v.num;
			have_version = 1;
		} else if (is_key(&key, "status")) {
			if (have_status || (v.type != J_TRUE && v.type != J_FALSE))
				return -EINVAL;
			out->status = v.type == J_TRUE;
			have_status = 1;
		} else if (is_key(&key, "reason")) {
			if (out->reason.ptr || v.type != J_STRING)
				return -EINVAL;
			out->reason = v.str;
		} else if (is_key(&key, "reason-context")) {
			if (out->has_context || v.type != J_OBJECT)
				return -EINVAL;
			out->has_context = 1;
		}
		ws(&r);
		if (r.p >= r.end)
			return -EINVAL;
		if (*r.p == ',') {
			r.p++;
			continue;
		}
		if (*r.p++ != '}')
			return -EINVAL;
		break;
	}
	ws(&r);
	if (r.p != r.end || !have_version || !have_status)
		return -EINVAL;
	if (!out->status && !out->reason.ptr)
		return -EINVAL;
	return 0;
}
