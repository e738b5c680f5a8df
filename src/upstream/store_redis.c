/* store_redis.c - the shared store on Redis (see store_redis.h).
 *
 * Keys (P = [cluster] prefix, K = the request key in hex):
 *   P a:K   a kept answer, sealed (AES-256-GCM, tls/seal.c), PX its TTL
 *   P c:K   the claim: the node name of the instance calling upstream, PX
 *           claim_ttl, refreshed every claim_ttl/3 while the call is on
 *   P r:H   a client's token bucket (H = SHA-256 of the identity), a hash
 *           {u: units, t: ms}, expiring once it would be full again
 *   P brski the cBRSKI telemetry stream (XADD ... MAXLEN ~ stream_max)
 * A request key is asked for with one script (lookup, else claim: a free
 * claim or one under our own node name, left by an earlier life of this
 * instance, is taken), published with another (answer set, our claim
 * deleted), so no two instances ever both hold a live claim of one key.
 *
 * The scripts are loaded once per connection (SCRIPT LOAD, pipelined before
 * the PING that makes the store UP) and called by the SHA1 Redis gave back
 * (EVALSHA): Redis neither receives nor hashes a script's text per call.
 * A NOSCRIPT reply (SCRIPT FLUSH, or a failover to a server without them)
 * answers that operation as the store down, logs once and re-establishes
 * the connection, which loads the scripts again. A publish it hit, or one
 * a lost connection left without a reply, is sent again once the store is
 * UP (a publish is idempotent).
 *
 * A rate-limit update is nobody's wait (its answer sets the local bucket
 * for the client's next request), so it is held back up to RATE_DEFER_MS
 * and goes out with the next command sent, usually the claim of the
 * device's next request: one write for both, and one wake-up of Redis
 * fewer per enrolment (a /crts, then a /sen). The updates held back go as
 * one script call for up to RATE_BATCH buckets, and the requests of one
 * client held back (its /crts, then its /sen) as one bucket update.
 *
 * States: DOWN (a reconnect timer with backoff, 100 ms doubling to 5 s),
 * CONNECTING (the connection, the SCRIPT LOADs and a PING in flight,
 * bounded), UP. Only UP
 * takes operations; in the other states they return NULL at once and the
 * caller goes on with its own state. A claim asked while UP and not
 * answered within store_timeout is answered STORE_DOWN, and the connection
 * is dropped as slow (a stopped Redis accepts TCP but never answers).
 */
#include "upstream/store_redis.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <hiredis/adapters/libevent.h>

#include "estgw/log.h"
#include "ops/metrics.h"
#include "tls/seal.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define MAX_PENDING 4096   /* operations without a reply: more is "down" */
#define RATE_DEFER_MS 10   /* a rate update waits at most this for company */
#define RATE_BATCH 16      /* buckets updated by one script call */
#define NAME_MAX_LEN 160
#define HOST_MAX 256

/* KEYS: answer, claim. ARGV: node, claim ms. -> {1, value, pttl} | {2} | {3, pttl} */
static const char lua_claim[] =
	"local a = redis.call('GET', KEYS[1])\n"
	"if a then return {1, a, redis.call('PTTL', KEYS[1])} end\n"
	"local c = redis.call('GET', KEYS[2])\n"
	"if (not c) or c == ARGV[1] then\n"
	"  redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])\n"
	"  return {2}\n"
	"end\n"
	"return {3, redis.call('PTTL', KEYS[2])}\n";
/* KEYS: answer, claim. ARGV: node, value ('' none), ms. */
static const char lua_publish[] =
	"if ARGV[2] ~= '' then redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) end\n"
	"if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end\n"
	"return 1\n";
/* KEYS: claim. ARGV: node, ms. */
static const char lua_refresh[] =
	"if redis.call('GET', KEYS[1]) == ARGV[1] then\n"
	"  return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end\n"
	"return 0\n";
/* KEYS: buckets. ARGV: per bucket its per_minute and the requests taken.
 * Token buckets in ratelimit.c's units (60000 a request, per_minute a
 * millisecond), on Redis's own clock. -> what each bucket holds after. */
static const char lua_rate[] =
	"local t = redis.call('TIME')\n"
	"local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
	"local out = {}\n"
	"for i = 1, #KEYS do\n"
	"  local rate = tonumber(ARGV[2 * i - 1])\n"
	"  local cap = rate * 60000\n"
	"  local b = redis.call('HMGET', KEYS[i], 'u', 't')\n"
	"  local u = tonumber(b[1]) or cap\n"
	"  local last = tonumber(b[2]) or now\n"
	"  if now > last then u = math.min(cap, u + (now - last) * rate) end\n"
	"  for _ = 1, tonumber(ARGV[2 * i]) do\n"
	"    if u >= 60000 then u = u - 60000 end\n"
	"  end\n"
	"  redis.call('HSET', KEYS[i], 'u', u, 't', now)\n"
	"  redis.call('PEXPIRE', KEYS[i], 61000)\n"
	"  out[i] = u\n"
	"end\n"
	"return out\n";

enum script { SC_CLAIM, SC_PUBLISH, SC_REFRESH, SC_RATE, SC_N };
static const char *const script_text[SC_N] = { lua_claim, lua_publish, lua_refresh, lua_rate };
#define SHA_HEX 40

enum conn_state { S_DOWN, S_CONNECTING, S_UP };
enum op_kind { OP_CLAIM, OP_RATE, OP_PUBLISH };

/* A publish, kept until Redis confirmed it: sent again after a reconnect
 * when its reply was NOSCRIPT or did not come. */
struct pub {
	char answer[NAME_MAX_LEN], claim[NAME_MAX_LEN], ms[24];
	uint8_t *sealed;       /* NULL: release only */
	size_t len;
};

struct store_op {
	struct estgw_store *s;
	enum op_kind kind;
	int done;              /* callback ran, or cancelled: ignore the reply */
	struct event *timer;   /* store_timeout (claims) */
	store_claim_fn fn;
	store_rate_fn rfn;
	void *arg;
	uint8_t key[STORE_KEY_LEN];
	char client[256];
	struct pub *pub;       /* OP_PUBLISH */
	uint32_t per_minute;   /* OP_RATE */
	unsigned taken;        /* OP_RATE: requests of this client held back */
	uint64_t seq;          /* OP_RATE: the number of the last of them */
	struct store_op *qnext; /* OP_RATE: s->rq, not sent yet */
	int redo;              /* OP_PUBLISH: to be sent again when UP */
	struct store_op *prev, *next; /* s->ops: waiting for a reply */
};

struct held {
	struct held *next;
	uint8_t key[STORE_KEY_LEN];
};

struct estgw_store {
	struct event_base *base;
	struct store_if iface;
	char addr[HOST_MAX + 8]; /* as configured, for logs */
	char host[HOST_MAX];
	int port;                /* 0: unix socket in host */
	char *password;
	char node[80];
	char prefix[80];
	uint8_t seal[ESTGW_SEAL_KEY_LEN];
	uint32_t claim_ms, timeout_ms, stream_max;
	enum conn_state state;
	redisAsyncContext *ac;
	char sha[SC_N][SHA_HEX + 1]; /* of this connection's SCRIPT LOADs */
	int loaded;              /* SCRIPT LOAD replies so far */
	struct evdns_base *dns;
	struct evdns_getaddrinfo_request *lookup;
	struct event *retry;     /* reconnect, or the connect bound */
	struct event *refresh;   /* held claims, every claim_ttl / 3 */
	struct event *flush;     /* the rate updates held back */
	struct store_op *rq, *rq_tail; /* rate updates not sent yet, in order */
	uint32_t backoff_ms;
	int closing;
	int outage;              /* logged as down, not yet back */
	time_t down_since;
	size_t pending;
	struct store_op *ops;
	struct held *held;
};

static const struct store_ops redis_ops;

/* ---- names -------------------------------------------------------------- */

static void hex(const uint8_t *in, size_t n, char *out)
{
	static const char d[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = d[in[i] >> 4];
		out[2 * i + 1] = d[in[i] & 15];
	}
	out[2 * n] = '\0';
}

static void key_name(const struct estgw_store *s, char kind, const uint8_t *key,
		     char out[NAME_MAX_LEN])
{
	char h[2 * STORE_KEY_LEN + 1];

	hex(key, STORE_KEY_LEN, h);
	snprintf(out, NAME_MAX_LEN, "%s%c:%s", s->prefix, kind, h);
}

/* ---- operations waiting for replies -------------------------------------- */

static struct store_op *op_new(struct estgw_store *s, enum op_kind kind)
{
	struct store_op *op = calloc(1, sizeof(*op));

	if (!op)
		return NULL;
	op->s = s;
	op->kind = kind;
	op->next = s->ops;
	if (s->ops)
		s->ops->prev = op;
	s->ops = op;
	s->pending++;
	return op;
}

static void op_free(struct store_op *op)
{
	struct estgw_store *s = op->s;

	if (op->prev)
		op->prev->next = op->next;
	else
		s->ops = op->next;
	if (op->next)
		op->next->prev = op->prev;
	s->pending--;
	if (op->timer)
		event_free(op->timer);
	if (op->pub) {
		free(op->pub->sealed);
		free(op->pub);
	}
	free(op);
}

/* Answer a claim once: @p v, @p a. */
static void claim_done(struct store_op *op, enum store_verdict v,
		       const struct store_answer *a, const char *metric)
{
	if (op->done)
		return;
	op->done = 1;
	if (op->timer)
		event_del(op->timer);
	metrics_store_op(metric);
	op->fn(op->arg, v, a);
}

/* ---- connection ---------------------------------------------------------- */

static void connect_now(struct estgw_store *s);
static void republish(struct estgw_store *s);

static void arm_retry(struct estgw_store *s, uint32_t ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	evtimer_add(s->retry, &tv);
}

/* DOWN now, the connection freed, a reconnect in @p ms. */
static void drop_rates(struct estgw_store *s);

static void drop(struct estgw_store *s, uint32_t ms)
{
	redisAsyncContext *ac = s->ac;

	drop_rates(s);
	metrics_store_state(0);
	s->state = S_DOWN;
	s->ac = NULL;
	if (ac)
		redisAsyncFree(ac); /* pending replies come back NULL: answered DOWN */
	evtimer_del(s->retry);
	arm_retry(s, ms);
}

/* The connection is gone or useless: DOWN, log once, reconnect later. */
static void go_down(struct estgw_store *s, const char *why)
{
	if (s->closing)
		return;
	if (!s->outage) {
		log_warn("cluster", "store %s unreachable (%s): serving from local state, "
			 "reconnecting with backoff", s->addr, why);
		s->outage = 1;
		s->down_since = time(NULL);
	}
	s->backoff_ms = s->backoff_ms ? s->backoff_ms * 2 : BACKOFF_MIN_MS;
	if (s->backoff_ms > BACKOFF_MAX_MS)
		s->backoff_ms = BACKOFF_MAX_MS;
	drop(s, s->backoff_ms);
}

static int is_noscript(const redisReply *rep)
{
	return rep && rep->type == REDIS_REPLY_ERROR && strncmp(rep->str, "NOSCRIPT", 8) == 0;
}

/* A NOSCRIPT reply on @p ac: Redis lost the scripts. Once per connection:
 * one log line, DOWN (operations answered from local state) and at once a
 * new connection, which loads them again. */
static void scripts_gone(struct estgw_store *s, const redisAsyncContext *ac)
{
	if (s->closing || ac != s->ac || s->state != S_UP)
		return;
	log_warn("cluster", "store %s lost the scripts (NOSCRIPT: SCRIPT FLUSH, or a failover "
		 "to a server without them): serving from local state, reconnecting to load "
		 "them again", s->addr);
	s->outage = 1;
	s->down_since = time(NULL);
	s->backoff_ms = 0;
	drop(s, 0);
}

static void on_ping(redisAsyncContext *ac, void *r, void *priv)
{
	struct estgw_store *s = priv;
	redisReply *rep = r;

	if (s->closing || ac != s->ac)
		return;
	if (!rep || rep->type == REDIS_REPLY_ERROR) {
		char why[128];
		snprintf(why, sizeof(why), "%s", rep ? rep->str : "no answer");
		go_down(s, why);
		return;
	}
	if (s->loaded != SC_N) {
		go_down(s, "the scripts did not load");
		return;
	}
	evtimer_del(s->retry);
	s->state = S_UP;
	s->backoff_ms = 0;
	metrics_store_state(1);
	if (s->outage)
		log_info("cluster", "store %s reachable again after %lld s", s->addr,
			 (long long)(time(NULL) - s->down_since));
	else
		log_info("cluster", "store %s connected, node %s", s->addr, s->node);
	s->outage = 0;
	republish(s);
}

static void on_script_loaded(redisAsyncContext *ac, void *r, void *priv)
{
	struct estgw_store *s = priv;
	redisReply *rep = r;

	if (s->closing || ac != s->ac)
		return;
	if (!rep || rep->type != REDIS_REPLY_STRING || rep->len != SHA_HEX || s->loaded >= SC_N) {
		char why[160];
		snprintf(why, sizeof(why), "SCRIPT LOAD: %s",
			 rep && rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply");
		go_down(s, why);
		return;
	}
	/* replies come in the order the loads were sent */
	memcpy(s->sha[s->loaded], rep->str, SHA_HEX);
	s->sha[s->loaded++][SHA_HEX] = '\0';
}

static void on_auth(redisAsyncContext *ac, void *r, void *priv)
{
	struct estgw_store *s = priv;
	redisReply *rep = r;

	if (s->closing || ac != s->ac)
		return;
	if (rep && rep->type == REDIS_REPLY_ERROR) {
		char why[160];
		snprintf(why, sizeof(why), "AUTH refused: %s", rep->str);
		go_down(s, why);
	}
}

static void on_connect(const redisAsyncContext *ac, int status)
{
	struct estgw_store *s = ac->data;

	if (s->closing || ac != s->ac)
		return;
	if (status != REDIS_OK) {
		s->ac = NULL; /* hiredis frees it after this callback */
		char why[160];
		snprintf(why, sizeof(why), "%s", ac->errstr);
		s->ac = NULL;
		go_down(s, why);
	}
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
	struct estgw_store *s = ac->data;

	if (s->closing || ac != s->ac)
		return;
	s->ac = NULL; /* hiredis frees it */
	go_down(s, status == REDIS_OK ? "closed" : ac->errstr);
}

/* The retry timer: in DOWN reconnect; in CONNECTING the connect (and the
 * first PING) took too long. */
static void on_retry(evutil_socket_t fd, short what, void *arg)
{
	struct estgw_store *s = arg;

	(void)fd;
	(void)what;
	if (s->state == S_CONNECTING)
		go_down(s, "no answer to PING");
	else if (s->state == S_DOWN)
		connect_now(s);
}

static void start_connection(struct estgw_store *s, const char *ip)
{
	redisAsyncContext *ac = s->port ? redisAsyncConnect(ip, s->port) :
					  redisAsyncConnectUnix(s->host);
	uint32_t bound = s->timeout_ms > 1000 ? s->timeout_ms : 1000;

	if (!ac || ac->err) {
		char why[160];
		snprintf(why, sizeof(why), "%s", ac ? ac->errstr : "out of memory");
		if (ac)
			redisAsyncFree(ac);
		go_down(s, why);
		return;
	}
	ac->data = s;
	s->ac = ac;
	s->state = S_CONNECTING;
	if (redisLibeventAttach(ac, s->base) != REDIS_OK) {
		go_down(s, "cannot attach to the loop");
		return;
	}
	redisAsyncSetConnectCallback(ac, on_connect);
	redisAsyncSetDisconnectCallback(ac, on_disconnect);
	/* queued by hiredis, sent once connected; nothing waits here */
	if (s->password)
		redisAsyncCommand(ac, on_auth, s, "AUTH %s", s->password);
	s->loaded = 0;
	for (int i = 0; i < SC_N; i++)
		redisAsyncCommand(ac, on_script_loaded, s, "SCRIPT LOAD %s", script_text[i]);
	redisAsyncCommand(ac, on_ping, s, "PING");
	arm_retry(s, bound);
}

static void on_resolved(int err, struct evutil_addrinfo *res, void *arg)
{
	struct estgw_store *s = arg;
	char ip[INET6_ADDRSTRLEN] = "";

	s->lookup = NULL;
	if (err == EVUTIL_EAI_CANCEL)
		return;
	if (!err && res) {
		const void *a = res->ai_family == AF_INET6 ?
			(const void *)&((struct sockaddr_in6 *)res->ai_addr)->sin6_addr :
			(const void *)&((struct sockaddr_in *)res->ai_addr)->sin_addr;
		evutil_inet_ntop(res->ai_family, a, ip, sizeof(ip));
	}
	if (res)
		evutil_freeaddrinfo(res);
	if (!*ip) {
		go_down(s, err ? evutil_gai_strerror(err) : "no address");
		return;
	}
	start_connection(s, ip);
}

static void connect_now(struct estgw_store *s)
{
	struct in6_addr a6;
	struct in_addr a4;
	struct evutil_addrinfo hints;

	if (!s->port || inet_pton(AF_INET, s->host, &a4) == 1 ||
	    inet_pton(AF_INET6, s->host, &a6) == 1) {
		start_connection(s, s->host);
		return;
	}
	/* a name: resolved on the loop (hiredis would block in getaddrinfo) */
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	s->state = S_CONNECTING;
	arm_retry(s, BACKOFF_MAX_MS);
	s->lookup = evdns_getaddrinfo(s->dns, s->host, NULL, &hints, on_resolved, s);
}

/* ---- calling the scripts ------------------------------------------------ */

static void flush_rates(struct estgw_store *s);

/* EVALSHA of script @p sc with @p nkeys keys, then @p argc arguments (keys
 * first; @p lens NULL: C strings). REDIS_OK or REDIS_ERR. */
static int call_script(struct estgw_store *s, enum script sc, redisCallbackFn *fn, void *priv,
		       int nkeys, int argc, const char *const *args, const size_t *lens)
{
	const char *argv[3 + 8];
	size_t len[3 + 8];
	char nk[4];

	if (argc > 8 || !s->ac)
		return REDIS_ERR;
	if (sc != SC_RATE && s->rq)
		flush_rates(s); /* in the same write, ahead of it */
	snprintf(nk, sizeof(nk), "%d", nkeys);
	argv[0] = "EVALSHA";
	argv[1] = s->sha[sc];
	argv[2] = nk;
	for (int i = 0; i < 3; i++)
		len[i] = strlen(argv[i]);
	for (int i = 0; i < argc; i++) {
		argv[3 + i] = args[i];
		len[3 + i] = lens ? lens[i] : strlen(args[i]);
	}
	return redisAsyncCommandArgv(s->ac, fn, priv, 3 + argc, argv, len);
}

/* The reply of a script whose result nobody waits for (a refresh). */
static void on_plain_reply(redisAsyncContext *ac, void *r, void *priv)
{
	struct estgw_store *s = priv;

	if (is_noscript(r))
		scripts_gone(s, ac);
}

/* ---- claims held: refreshed while the upstream call is on ---------------- */

static void held_add(struct estgw_store *s, const uint8_t *key)
{
	struct held *h = calloc(1, sizeof(*h));

	if (!h)
		return; /* the claim just expires sooner */
	memcpy(h->key, key, STORE_KEY_LEN);
	h->next = s->held;
	s->held = h;
}

static void held_del(struct estgw_store *s, const uint8_t *key)
{
	for (struct held **pp = &s->held; *pp; pp = &(*pp)->next) {
		if (memcmp((*pp)->key, key, STORE_KEY_LEN) == 0) {
			struct held *h = *pp;
			*pp = h->next;
			free(h);
			return;
		}
	}
}

static void on_refresh(evutil_socket_t fd, short what, void *arg)
{
	struct estgw_store *s = arg;
	char name[NAME_MAX_LEN], ms[16];

	(void)fd;
	(void)what;
	if (s->state != S_UP)
		return;
	snprintf(ms, sizeof(ms), "%u", s->claim_ms);
	for (struct held *h = s->held; h; h = h->next) {
		key_name(s, 'c', h->key, name);
		const char *args[] = { name, s->node, ms };
		call_script(s, SC_REFRESH, on_plain_reply, s, 1, 3, args, NULL);
	}
}

/* ---- the operations ----------------------------------------------------- */

static int usable(const struct estgw_store *s)
{
	return !s->closing && s->state == S_UP && s->ac && s->pending < MAX_PENDING;
}

/* A sealed answer: "status ctlen ct body" inside. 0, or -EBADMSG. */
static int open_answer(struct estgw_store *s, const char *name, const redisReply *v,
		       long long pttl, struct store_op *op)
{
	uint8_t *plain = malloc(v->len ? v->len : 1);
	size_t n = 0;
	char ct[256];

	if (!plain)
		return -ENOMEM;
	if (estgw_unseal(s->seal, name, strlen(name), (const uint8_t *)v->str, v->len,
			 plain, &n) != 0 || n < 3 || n < 3u + plain[2]) {
		free(plain);
		return -EBADMSG;
	}
	memcpy(ct, plain + 3, plain[2]);
	ct[plain[2]] = '\0';
	struct store_answer a = {
		.status = plain[0] << 8 | plain[1],
		.content_type = plain[2] ? ct : NULL,
		.body = plain + 3 + plain[2],
		.len = n - 3 - plain[2],
		.ttl = pttl > 0 ? (uint32_t)((pttl + 999) / 1000) : 1,
	};
	claim_done(op, STORE_ANSWER, &a, "answer");
	explicit_bzero(plain, n); /* may be a private key (skg) */
	free(plain);
	return 0;
}

static void on_claim_reply(redisAsyncContext *ac, void *r, void *priv)
{
	struct store_op *op = priv;
	struct estgw_store *s = op->s;
	redisReply *rep = r;
	char name[NAME_MAX_LEN];

	if (s->closing) /* core may still cancel it: freed by store_redis_free */
		return;
	if (is_noscript(rep)) {
		claim_done(op, STORE_DOWN, NULL, "down");
		scripts_gone(s, ac);
	} else if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements < 1 ||
	    rep->element[0]->type != REDIS_REPLY_INTEGER) {
		if (rep && rep->type == REDIS_REPLY_ERROR && !op->done)
			log_warn("cluster", "store %s: %s", s->addr, rep->str);
		claim_done(op, STORE_DOWN, NULL, "down");
	} else if (rep->element[0]->integer == 1 && rep->elements == 3) {
		key_name(s, 'a', op->key, name);
		if (!op->done && open_answer(s, name, rep->element[1],
					     rep->element[2]->integer, op) != 0) {
			log_warn("cluster", "store %s: the answer under %s does not open with "
				 "[cluster] seal_key: ignored", s->addr, name);
			claim_done(op, STORE_DOWN, NULL, "down");
		}
	} else if (rep->element[0]->integer == 2) {
		if (!op->done)
			held_add(s, op->key);
		else /* we gave up before the reply: let the claim go */
			s->iface.ops->publish(s, op->key, NULL);
		claim_done(op, STORE_CLAIMED, NULL, "claimed");
	} else {
		claim_done(op, STORE_BUSY, NULL, "busy");
	}
	op_free(op);
}

static void on_claim_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct store_op *op = arg;
	struct estgw_store *s = op->s;

	(void)fd;
	(void)what;
	claim_done(op, STORE_DOWN, NULL, "timeout");
	if (s->state == S_UP) {
		char why[96];
		snprintf(why, sizeof(why), "no answer within store_timeout %u ms", s->timeout_ms);
		go_down(s, why); /* frees the connection: op goes with its reply */
	}
}

static struct store_op *redis_claim(struct estgw_store *s, const uint8_t key[STORE_KEY_LEN],
				    store_claim_fn fn, void *arg)
{
	char answer[NAME_MAX_LEN], claim[NAME_MAX_LEN], ms[16];
	struct timeval tv = { s->timeout_ms / 1000, (s->timeout_ms % 1000) * 1000 };
	struct store_op *op;

	if (!usable(s)) {
		metrics_store_op("down");
		return NULL;
	}
	op = op_new(s, OP_CLAIM);
	if (!op)
		return NULL;
	op->fn = fn;
	op->arg = arg;
	memcpy(op->key, key, STORE_KEY_LEN);
	op->timer = evtimer_new(s->base, on_claim_timeout, op);
	key_name(s, 'a', key, answer);
	key_name(s, 'c', key, claim);
	snprintf(ms, sizeof(ms), "%u", s->claim_ms);
	const char *args[] = { answer, claim, s->node, ms };
	if (!op->timer || evtimer_add(op->timer, &tv) != 0 ||
	    call_script(s, SC_CLAIM, on_claim_reply, op, 2, 4, args, NULL) != REDIS_OK) {
		op_free(op);
		metrics_store_op("down");
		return NULL;
	}
	return op;
}

static void redis_cancel(struct store_op *op)
{
	if (!op)
		return;
	op->done = 1; /* freed when its reply (or the disconnect) comes */
	if (op->timer)
		event_del(op->timer);
}

static void on_publish_reply(redisAsyncContext *ac, void *r, void *priv);

static int send_publish(struct estgw_store *s, struct store_op *op)
{
	const struct pub *p = op->pub;
	const char *args[] = { p->answer, p->claim, s->node,
			       p->sealed ? (const char *)p->sealed : "", p->ms };
	size_t lens[] = { strlen(p->answer), strlen(p->claim), strlen(s->node),
			  p->sealed ? p->len : 0, strlen(p->ms) };

	return call_script(s, SC_PUBLISH, on_publish_reply, op, 2, 5, args, lens);
}

/* Confirmed: done. NOSCRIPT, or no reply (the connection went): sent again
 * once the store is UP, unless it is closing or too much waits. */
static void on_publish_reply(redisAsyncContext *ac, void *r, void *priv)
{
	struct store_op *op = priv;
	struct estgw_store *s = op->s;
	redisReply *rep = r;

	if (s->closing)
		return; /* freed by store_redis_free */
	if (rep && !is_noscript(rep)) {
		op_free(op);
		return;
	}
	if (rep)
		scripts_gone(s, ac);
	op->redo = 1;
	if (s->pending > MAX_PENDING)
		op_free(op);
}

/* After a reconnect: the publishes that did not get through. */
static void republish(struct estgw_store *s)
{
	struct store_op *op = s->ops, *next;

	for (; op && s->state == S_UP; op = next) {
		next = op->next;
		if (op->kind != OP_PUBLISH || !op->redo)
			continue;
		op->redo = 0;
		if (send_publish(s, op) != REDIS_OK)
			op_free(op);
	}
}

/* A sealed copy of @p a into @p p (kept until Redis confirms). 0 or -errno. */
static int seal_answer(struct estgw_store *s, struct pub *p, const struct store_answer *a)
{
	size_t ctlen = a->content_type ? strlen(a->content_type) : 0;
	size_t n = 3 + ctlen + a->len;
	uint8_t *plain;

	if (ctlen >= 256 || a->status <= 0 || a->status >= 65536)
		return -EINVAL;
	plain = malloc(n);
	p->sealed = malloc(n + ESTGW_SEAL_OVERHEAD);
	if (!plain || !p->sealed) {
		free(plain);
		return -ENOMEM;
	}
	plain[0] = (uint8_t)(a->status >> 8);
	plain[1] = (uint8_t)a->status;
	plain[2] = (uint8_t)ctlen;
	memcpy(plain + 3, a->content_type, ctlen);
	memcpy(plain + 3 + ctlen, a->body, a->len);
	p->len = n + ESTGW_SEAL_OVERHEAD;
	int rc = estgw_seal(s->seal, p->answer, strlen(p->answer), plain, n, p->sealed);
	explicit_bzero(plain, n);
	free(plain);
	return rc;
}

static void redis_publish(struct estgw_store *s, const uint8_t key[STORE_KEY_LEN],
			  const struct store_answer *a)
{
	struct store_op *op;
	struct pub *p;

	held_del(s, key);
	if (!usable(s))
		return;
	op = op_new(s, OP_PUBLISH);
	p = op ? calloc(1, sizeof(*p)) : NULL;
	if (!p) {
		if (op)
			op_free(op);
		return;
	}
	op->pub = p;
	key_name(s, 'a', key, p->answer);
	key_name(s, 'c', key, p->claim);
	if (a && seal_answer(s, p, a) != 0) {
		free(p->sealed); /* the claim still goes */
		p->sealed = NULL;
	}
	snprintf(p->ms, sizeof(p->ms), "%llu", (unsigned long long)(a ? a->ttl : 1) * 1000);
	if (send_publish(s, op) != REDIS_OK)
		op_free(op);
}

/* The reply to one rate call: the ops of the batch, in KEYS order, chained
 * by qnext from the first (@p priv). */
static void on_rate_reply(redisAsyncContext *ac, void *r, void *priv)
{
	struct store_op *op = priv, *next;
	redisReply *rep = r;
	size_t i = 0;

	if (op->s->closing)
		return; /* freed by store_redis_free */
	if (is_noscript(rep))
		scripts_gone(op->s, ac);
	for (; op; op = next, i++) {
		next = op->qnext;
		if (!op->done && op->rfn && rep && rep->type == REDIS_REPLY_ARRAY &&
		    i < rep->elements && rep->element[i]->type == REDIS_REPLY_INTEGER &&
		    rep->element[i]->integer >= 0) {
			metrics_store_rate(op->taken);
			op->rfn(op->arg, op->client, (uint64_t)rep->element[i]->integer, op->seq);
		}
		op_free(op);
	}
}

/* One script call for the @p n ops chained from @p first (n <= RATE_BATCH). */
static int send_rates(struct estgw_store *s, struct store_op *first, size_t n)
{
	char names[RATE_BATCH][NAME_MAX_LEN], nums[RATE_BATCH][2][16], nk[8];
	const char *argv[3 + 3 * RATE_BATCH];
	size_t i = 0, argc = 3;
	uint8_t d[32];
	char h[65];

	if (!s->ac || n > RATE_BATCH)
		return REDIS_ERR;
	snprintf(nk, sizeof(nk), "%zu", n);
	argv[0] = "EVALSHA";
	argv[1] = s->sha[SC_RATE];
	argv[2] = nk;
	for (struct store_op *op = first; op && i < n; op = op->qnext, i++) {
		estgw_seal_digest(op->client, strlen(op->client), d);
		hex(d, sizeof(d), h);
		snprintf(names[i], sizeof(names[i]), "%sr:%s", s->prefix, h);
		argv[argc++] = names[i];
	}
	i = 0;
	for (struct store_op *op = first; op && i < n; op = op->qnext, i++) {
		snprintf(nums[i][0], sizeof(nums[i][0]), "%u", op->per_minute);
		snprintf(nums[i][1], sizeof(nums[i][1]), "%u", op->taken);
		argv[argc++] = nums[i][0];
		argv[argc++] = nums[i][1];
	}
	return redisAsyncCommandArgv(s->ac, on_rate_reply, first, (int)argc, argv, NULL);
}

/* The rate updates held back go out now: on their own at RATE_DEFER_MS,
 * else ahead of the command being sent, in the same write; up to
 * RATE_BATCH buckets in one script call. */
static void flush_rates(struct estgw_store *s)
{
	struct store_op *op = s->rq;

	s->rq = s->rq_tail = NULL;
	evtimer_del(s->flush);
	while (op) {
		struct store_op *first = op, *last = op, *rest;
		size_t n = 1;

		while (last->qnext && n < RATE_BATCH) {
			last = last->qnext;
			n++;
		}
		rest = last->qnext;
		last->qnext = NULL; /* the batch's chain, for its reply */
		if (s->closing || s->state != S_UP || send_rates(s, first, n) != REDIS_OK) {
			for (struct store_op *next; first; first = next) {
				next = first->qnext;
				op_free(first);
			}
		}
		op = rest;
	}
}

/* The connection went: the updates held back are not sent (the local
 * buckets stand, as for any update while the store is down). */
static void drop_rates(struct estgw_store *s)
{
	struct store_op *op = s->rq, *next;

	s->rq = s->rq_tail = NULL;
	if (s->flush)
		evtimer_del(s->flush);
	for (; op; op = next) {
		next = op->qnext;
		op_free(op);
	}
}

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	flush_rates(arg);
}

static void redis_rate(struct estgw_store *s, const char *client, uint32_t per_minute,
		       uint64_t seq, store_rate_fn fn, void *arg)
{
	struct timeval tv = { 0, RATE_DEFER_MS * 1000 };
	struct store_op *op;

	if (!usable(s))
		return;
	if (!client)
		client = "-";
	/* the same client's requests held back (its /crts, then its /sen): one
	 * bucket update taking them all */
	for (op = s->rq; op; op = op->qnext)
		if (op->per_minute == per_minute && op->rfn == fn && op->arg == arg &&
		    strncmp(op->client, client, sizeof(op->client) - 1) == 0) {
			op->taken++;
			op->seq = seq;
			return;
		}
	op = op_new(s, OP_RATE);
	if (!op)
		return;
	op->rfn = fn;
	op->arg = arg;
	op->per_minute = per_minute;
	op->taken = 1;
	op->seq = seq;
	snprintf(op->client, sizeof(op->client), "%s", client);
	if (s->rq_tail)
		s->rq_tail->qnext = op;
	else
		s->rq = op;
	s->rq_tail = op;
	if (!evtimer_pending(s->flush, NULL))
		evtimer_add(s->flush, &tv);
}

static void redis_telemetry(struct estgw_store *s, const char *const *fields, size_t n)
{
	const char *argv[6 + 2 + 16];
	char name[NAME_MAX_LEN], max[16];
	size_t argc = 0;

	if (!usable(s) || n > 16)
		return;
	snprintf(name, sizeof(name), "%sbrski", s->prefix);
	snprintf(max, sizeof(max), "%u", s->stream_max);
	argv[argc++] = "XADD";
	argv[argc++] = name;
	argv[argc++] = "MAXLEN";
	argv[argc++] = "~";
	argv[argc++] = max;
	argv[argc++] = "*";
	argv[argc++] = "node";
	argv[argc++] = s->node;
	for (size_t i = 0; i < n; i++)
		argv[argc++] = fields[i];
	if (s->rq)
		flush_rates(s);
	redisAsyncCommandArgv(s->ac, NULL, NULL, (int)argc, argv, NULL);
}

static const struct store_ops redis_ops = {
	.claim = redis_claim,
	.cancel = redis_cancel,
	.publish = redis_publish,
	.rate = redis_rate,
	.telemetry = redis_telemetry,
};

/* ---- life --------------------------------------------------------------- */

/* "unix:/path" or "host:port" ("[v6]:port") into s->host / s->port. */
static int parse_addr(struct estgw_store *s, const char *addr)
{
	const char *colon;
	size_t hl;

	if (!addr)
		return -EINVAL;
	colon = strrchr(addr, ':');
	snprintf(s->addr, sizeof(s->addr), "%s", addr);
	if (strncmp(addr, "unix:", 5) == 0) {
		snprintf(s->host, sizeof(s->host), "%s", addr + 5);
		s->port = 0;
		return 0;
	}
	if (!colon)
		return -EINVAL;
	hl = (size_t)(colon - addr);
	if (addr[0] == '[' && hl >= 2) {
		addr++;
		hl -= 2;
	}
	if (hl >= sizeof(s->host))
		return -EINVAL;
	memcpy(s->host, addr, hl);
	s->host[hl] = '\0';
	s->port = atoi(colon + 1);
	return 0;
}

static int read_password(struct estgw_store *s, const char *path, char *err, size_t errlen)
{
	char buf[512];
	FILE *f = fopen(path, "re");

	if (!f) {
		snprintf(err, errlen, "[cluster] password_file %s: %s", path, strerror(errno));
		return -errno;
	}
	if (!fgets(buf, sizeof(buf), f))
		buf[0] = '\0';
	fclose(f);
	buf[strcspn(buf, "\r\n")] = '\0';
	s->password = strdup(buf);
	explicit_bzero(buf, sizeof(buf));
	return s->password ? 0 : -ENOMEM;
}

struct estgw_store *store_redis_new(struct event_base *base,
				    const struct estgw_config *cfg, char *err,
				    size_t errlen)
{
	struct estgw_store *s = calloc(1, sizeof(*s));
	struct timeval tv;
	char why[256] = "";
	char host[64];

	if (!s) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	s->base = base;
	s->iface.ops = &redis_ops;
	s->iface.s = s;
	s->claim_ms = cfg->cluster.claim_ttl * 1000;
	s->timeout_ms = cfg->cluster.store_timeout;
	s->stream_max = cfg->cluster.stream_max;
	snprintf(s->prefix, sizeof(s->prefix), "%s", cfg->cluster.prefix ? cfg->cluster.prefix : "estgw:");
	if (cfg->cluster.node) {
		snprintf(s->node, sizeof(s->node), "%s", cfg->cluster.node);
	} else {
		if (gethostname(host, sizeof(host)) != 0)
			snprintf(host, sizeof(host), "estgw");
		host[sizeof(host) - 1] = '\0';
		snprintf(s->node, sizeof(s->node), "%s-%ld", host, (long)getpid());
	}
	if (parse_addr(s, cfg->cluster.redis) != 0) {
		snprintf(err, errlen, "[cluster] redis %s: bad address", cfg->cluster.redis);
		goto fail;
	}
	if (estgw_seal_load(cfg->cluster.seal_key, s->seal, why, sizeof(why)) != 0) {
		snprintf(err, errlen, "[cluster] seal_key %s", why);
		goto fail;
	}
	if (*why)
		log_warn("cluster", "[cluster] seal_key %s", why);
	if (cfg->cluster.password_file &&
	    read_password(s, cfg->cluster.password_file, err, errlen) != 0)
		goto fail;
	s->retry = evtimer_new(base, on_retry, s);
	s->refresh = event_new(base, -1, EV_PERSIST, on_refresh, s);
	s->flush = evtimer_new(base, on_flush, s);
	s->dns = s->port ? evdns_base_new(base, EVDNS_BASE_INITIALIZE_NAMESERVERS) : NULL;
	if (!s->retry || !s->refresh || !s->flush || (s->port && !s->dns)) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	tv.tv_sec = s->claim_ms / 3000;
	tv.tv_usec = (s->claim_ms / 3 % 1000) * 1000;
	event_add(s->refresh, &tv);
	metrics_store_state(0);
	s->state = S_DOWN;
	connect_now(s);
	return s;
fail:
	store_redis_free(s);
	return NULL;
}

const struct store_if *store_redis_if(struct estgw_store *s)
{
	return s ? &s->iface : NULL;
}

void store_redis_close(struct estgw_store *s)
{
	if (!s || s->closing)
		return;
	s->closing = 1;
	drop_rates(s);
	if (s->lookup)
		evdns_getaddrinfo_cancel(s->lookup);
	s->lookup = NULL;
	if (s->ac) {
		redisAsyncContext *ac = s->ac;
		s->ac = NULL;
		redisAsyncFree(ac); /* replies come back NULL: no calls; ops stay
				     * until store_redis_free (core may cancel them) */
	}
	s->state = S_DOWN;
}

void store_redis_free(struct estgw_store *s)
{
	if (!s)
		return;
	store_redis_close(s);
	while (s->ops)
		op_free(s->ops);
	while (s->held) {
		struct held *h = s->held;
		s->held = h->next;
		free(h);
	}
	if (s->retry)
		event_free(s->retry);
	if (s->refresh)
		event_free(s->refresh);
	if (s->flush)
		event_free(s->flush);
	if (s->dns)
		evdns_base_free(s->dns, 0);
	if (s->password) {
		explicit_bzero(s->password, strlen(s->password));
		free(s->password);
	}
	explicit_bzero(s->seal, sizeof(s->seal));
	free(s);
}
