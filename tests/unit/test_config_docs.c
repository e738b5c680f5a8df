/* test_config_docs.c - the documentation of the configuration keys agrees
 * with the schema table in src/ops/config.c (estgw_config_key_info()).
 *
 * Checked, in both directions (no key missing, no key the table lacks):
 *  - docs/man/estgw.conf.5: per key, the lines "Type: T.", "Default: D." or
 *    "Required." / "Required, may be repeated.", "Range: MIN to MAX."
 *    for integers, and "On SIGHUP: applied." or "On SIGHUP: needs a
 *    restart." as the table's live/restart column says;
 *  - config/estgw.conf: every key in its section with its default (a key
 *    with no default commented out, a required one set), integer ranges
 *    ("MIN..MAX") in the comment above;
 *  - docs/configuration.md: the key table's default, range and SIGHUP
 *    (applied/restart) columns.
 * --check uses the table itself, so it cannot drift.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "estgw/config.h"

#define MAX_KEYS ESTGW_CFG_MAX_KEYS
#define MAX_LINES 4000

struct doc {
	char *text;
	char *lines[MAX_LINES];
	size_t n;
};

static struct estgw_cfg_keyinfo keys[MAX_KEYS];
static size_t nkeys;
/* The text of the last loaded document: freed by the next load_doc() or the
 * group teardown, so a failing check (fail_msg() jumps out) leaks nothing. */
static char *loaded_text;

static void load_doc(struct doc *d, const char *rel)
{
	const char *root = getenv("ESTGW_SOURCE_ROOT");
	char path[4096];
	FILE *f;
	long len;

	if (!root)
		skip();
	snprintf(path, sizeof(path), "%s/%s", root, rel);
	f = fopen(path, "r");
	if (!f)
		fail_msg("cannot open %s", path);
	fseek(f, 0, SEEK_END);
	len = ftell(f);
	rewind(f);
	free(loaded_text);
	loaded_text = d->text = calloc(1, (size_t)len + 1);
	assert_non_null(d->text);
	assert_int_equal(fread(d->text, 1, (size_t)len, f), (size_t)len);
	fclose(f);
	d->n = 0;
	for (char *p = d->text; p && *p && d->n < MAX_LINES;) {
		d->lines[d->n++] = p;
		p = strchr(p, '\n');
		if (p)
			*p++ = '\0';
	}
}

static int group_setup(void **state)
{
	while (nkeys < MAX_KEYS && estgw_config_key_info(nkeys, &keys[nkeys]) == 0)
		nkeys++;
	return nkeys > 0 && nkeys < MAX_KEYS ? 0 : -1;
}

static int group_teardown(void **state)
{
	free(loaded_text);
	loaded_text = NULL;
	return 0;
}

static const struct estgw_cfg_keyinfo *find(const char *section, const char *name)
{
	for (size_t i = 0; i < nkeys; i++)
		if (strcmp(keys[i].section, section) == 0 && strcmp(keys[i].name, name) == 0)
			return &keys[i];
	return NULL;
}

static int is_int(const struct estgw_cfg_keyinfo *k)
{
	return strcmp(k->type, "integer") == 0;
}

/* ---- the schema itself ------------------------------------------------ */

static void test_schema_rows_complete(void **state)
{
	for (size_t i = 0; i < nkeys; i++) {
		const struct estgw_cfg_keyinfo *k = &keys[i];
		if (strcmp(k->type, "?") == 0)
			fail_msg("[%s] %s: setter without a type name", k->section, k->name);
		if (k->required && k->def)
			fail_msg("[%s] %s: required with a default", k->section, k->name);
		if (is_int(k) && (!k->def || k->min > k->max))
			fail_msg("[%s] %s: integer without default or with bad range", k->section,
				 k->name);
		if (find(k->section, k->name) != k)
			fail_msg("[%s] %s: listed twice", k->section, k->name);
		/* sockets are bound once; brski is made once from the start-up config */
		if (strcmp(k->name, "listen") == 0 && k->live)
			fail_msg("[%s] %s: a listen address cannot be live", k->section, k->name);
	}
	assert_int_equal(estgw_config_key_info(nkeys, &(struct estgw_cfg_keyinfo){ 0 }), -ENOENT);
}

/* ---- estgw.conf(5) ------------------------------------------------------ */

/** The lines the man page must have for @p k, in order. */
static void man_expect(const struct estgw_cfg_keyinfo *k, char want[4][96], size_t *n)
{
	*n = 0;
	snprintf(want[(*n)++], 96, "Type: %s.", k->type);
	if (k->required)
		snprintf(want[(*n)++], 96, "%s", k->multi ? "Required, may be repeated." : "Required.");
	else
		snprintf(want[(*n)++], 96, "Default: %s.", k->def ? k->def : "none");
	if (is_int(k))
		snprintf(want[(*n)++], 96, "Range: %u to %u.", k->min, k->max);
	snprintf(want[(*n)++], 96, "%s", k->live ? "On SIGHUP: applied." : "On SIGHUP: needs a restart.");
}

/** From the man page: the attribute lines of the entry starting at @p i. */
static size_t man_attrs(const struct doc *d, size_t i, const char *got[5])
{
	size_t n = 0;

	for (i++; i < d->n; i++) {
		const char *l = d->lines[i];
		if (!strncmp(l, ".It", 3) || !strncmp(l, ".El", 3))
			break;
		if ((!strncmp(l, "Type:", 5) || !strncmp(l, "Default:", 8) ||
		     !strncmp(l, "Range:", 6) || !strncmp(l, "Required", 8) ||
		     !strncmp(l, "On SIGHUP:", 10)) && n < 5)
			got[n++] = l;
	}
	return n;
}

static void test_man_page_matches_table(void **state)
{
	struct doc d;
	char section[32] = "";
	int seen[MAX_KEYS] = { 0 };

	load_doc(&d, "docs/man/estgw.conf.5");
	for (size_t i = 0; i < d.n; i++) {
		const char *l = d.lines[i];
		char name[64], want[4][96];
		const char *got[5];
		size_t nw, ng;

		if (sscanf(l, ".Ss \\&[%31[a-z0-9]\\&]", section) == 1)
			continue;
		if (sscanf(l, ".It Cm %63[a-z_]", name) != 1 || !*section)
			continue;
		const struct estgw_cfg_keyinfo *k = find(section, name);
		if (!k)
			fail_msg("estgw.conf.5:%zu: [%s] %s is not in the schema table", i + 1,
				 section, name);
		seen[k - keys]++;
		man_expect(k, want, &nw);
		ng = man_attrs(&d, i, got);
		if (ng != nw)
			fail_msg("estgw.conf.5: [%s] %s: %zu attribute lines, want %zu (%s)", section,
				 name, ng, nw, want[0]);
		for (size_t j = 0; j < nw; j++)
			if (strcmp(got[j], want[j]) != 0)
				fail_msg("estgw.conf.5: [%s] %s: '%s', the table says '%s'", section,
					 name, got[j], want[j]);
	}
	for (size_t i = 0; i < nkeys; i++)
		if (seen[i] != 1)
			fail_msg("estgw.conf.5: [%s] %s documented %d times", keys[i].section,
				 keys[i].name, seen[i]);
}

/* ---- config/estgw.conf ------------------------------------------------- */

/** The comment lines above line @p i, back to a blank line. */
static int comment_has(const struct doc *d, size_t i, const char *needle)
{
	while (i-- > 0 && d->lines[i][0] != '\0' && d->lines[i][0] != '[')
		if (d->lines[i][0] == ';' && strstr(d->lines[i], needle))
			return 1;
	return 0;
}

static void test_example_matches_table(void **state)
{
	struct doc d;
	char section[32] = "";
	int seen[MAX_KEYS] = { 0 };

	load_doc(&d, "config/estgw.conf");
	for (size_t i = 0; i < d.n; i++) {
		const char *l = d.lines[i];
		char name[64], value[256] = "", range[64];
		int commented = l[0] == ';';

		if (sscanf(l, "[%31[a-z0-9]]", section) == 1)
			continue;
		if (sscanf(l + commented, "%63[a-z_] = %255[^\n]", name, value) != 2)
			continue;
		/* the whole value (some defaults are lists with spaces), without a
		 * trailing " ;" comment or blanks */
		char *c = strstr(value, " ;");
		if (c)
			*c = '\0';
		for (size_t n = strlen(value); n > 0 && (value[n - 1] == ' ' || value[n - 1] == '\t');)
			value[--n] = '\0';
		const struct estgw_cfg_keyinfo *k = find(section, name);
		if (!k)
			fail_msg("estgw.conf:%zu: [%s] %s is not in the schema table", i + 1,
				 section, name);
		if (k->multi && seen[k - keys])
			continue;
		seen[k - keys]++;
		if (k->def && (commented || strcmp(value, k->def) != 0))
			fail_msg("estgw.conf:%zu: [%s] %s = %s%s, the default is %s", i + 1, section,
				 name, value, commented ? " (commented out)" : "", k->def);
		if (!k->def && !k->required && !commented)
			fail_msg("estgw.conf:%zu: [%s] %s has no default: show it commented out",
				 i + 1, section, name);
		if (k->required && commented)
			fail_msg("estgw.conf:%zu: [%s] %s is required", i + 1, section, name);
		snprintf(range, sizeof(range), "%u..%u", k->min, k->max);
		if (is_int(k) && !comment_has(&d, i, range))
			fail_msg("estgw.conf:%zu: [%s] %s: the comment above lacks the range %s",
				 i + 1, section, name, range);
	}
	for (size_t i = 0; i < nkeys; i++)
		if (seen[i] != 1)
			fail_msg("estgw.conf: [%s] %s listed %d times", keys[i].section,
				 keys[i].name, seen[i]);
}

/* ---- docs/configuration.md --------------------------------------------- */

/** Column @p col (0-based) of a "| a | b |" row, trimmed, into @p out. */
static int md_col(const char *row, int col, char *out, size_t outlen)
{
	const char *p = row;

	for (int c = 0; c <= col; c++) {
		p = strchr(p, '|');
		if (!p)
			return -1;
		p++;
	}
	while (*p == ' ')
		p++;
	const char *end = strchr(p, '|');
	if (!end)
		return -1;
	while (end > p && end[-1] == ' ')
		end--;
	snprintf(out, outlen, "%.*s", (int)(end - p), p);
	return 0;
}

static void test_reference_matches_table(void **state)
{
	struct doc d;
	int seen[MAX_KEYS] = { 0 };

	load_doc(&d, "docs/configuration.md");
	for (size_t i = 0; i < d.n; i++) {
		char section[64], key[64], def[64], range[64], apply[64], want[64];

		if (md_col(d.lines[i], 0, section, sizeof(section)) || md_col(d.lines[i], 1, key, sizeof(key)) ||
		    md_col(d.lines[i], 3, def, sizeof(def)) || md_col(d.lines[i], 4, range, sizeof(range)) ||
		    md_col(d.lines[i], 5, apply, sizeof(apply)) || key[0] != '`')
			continue;
		key[strlen(key) - 1] = '\0';
		const struct estgw_cfg_keyinfo *k = find(section, key + 1);
		if (!k)
			fail_msg("configuration.md:%zu: [%s] %s is not in the schema table", i + 1,
				 section, key + 1);
		seen[k - keys]++;
		snprintf(want, sizeof(want), "%s", k->required ? "required" : k->def ? k->def : "none");
		if (strcmp(def, want) != 0)
			fail_msg("configuration.md: [%s] %s: default '%s', the table says '%s'",
				 section, key + 1, def, want);
		snprintf(want, sizeof(want), "%u..%u", k->min, k->max);
		if (is_int(k) && strcmp(range, want) != 0)
			fail_msg("configuration.md: [%s] %s: range '%s', the table says '%s'",
				 section, key + 1, range, want);
		if (strcmp(apply, k->live ? "applied" : "restart") != 0)
			fail_msg("configuration.md: [%s] %s: SIGHUP '%s', the table says '%s'",
				 section, key + 1, apply, k->live ? "applied" : "restart");
	}
	for (size_t i = 0; i < nkeys; i++)
		if (seen[i] != 1)
			fail_msg("configuration.md: [%s] %s listed %d times", keys[i].section,
				 keys[i].name, seen[i]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_schema_rows_complete),
		cmocka_unit_test(test_man_page_matches_table),
		cmocka_unit_test(test_example_matches_table),
		cmocka_unit_test(test_reference_matches_table),
	};
	return cmocka_run_group_tests_name("config_docs", tests, group_setup, group_teardown);
}
