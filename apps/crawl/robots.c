/* robots.c: robots.txt (RFC 9309), fetched once per origin and cached for the crawl.
 *
 * The first worker that needs an origin's rules fetches /robots.txt (others wait on the
 * entry's ready channel, closed once the rules are known). 2xx: the rules of the groups
 * whose user-agent matches our product token, else of the "*" groups, combined; 4xx (and
 * anything else unusual, such as too many redirects): allow all; 5xx or unreachable:
 * disallow all. The most specific (longest) matching pattern wins, Allow on a tie;
 * '*' matches any sequence and a final '$' anchors the end. /robots.txt is always allowed.
 *
 * Invariants: entries are only added, under mu; an entry's rules and mode are written by
 * its fetcher before ready is closed and only read after, so they need no lock. */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "crawl.h"

typedef struct rule {
  bool allow;
  char *pattern;
} rule;

typedef enum { ROBOTS_RULES, ROBOTS_ALLOW_ALL, ROBOTS_DISALLOW_ALL } robots_mode;

typedef struct entry {
  struct entry *next; /* guarded by crawl_robots.mu */
  char *origin;       /* scheme://authority; immutable */
  weft_chan *ready;   /* closed once mode and rules are set */
  robots_mode mode;   /* written before ready closes */
  rule *rules;
  int nrules;
} entry;

struct crawl_robots {
  weft_mutex mu;  /* guards entries */
  entry *entries; /* guarded by mu */
  char *agent;    /* our product token, lower case; immutable */
};

crawl_robots *crawl_robots_new(const char *user_agent)
{
  crawl_robots *r = calloc(1, sizeof *r);
  if (!r)
    return NULL;
  weft_mutex_init(&r->mu);
  size_t n = strcspn(user_agent, "/ \t");
  r->agent = strndup(user_agent, n);
  if (!r->agent) {
    free(r);
    return NULL;
  }
  for (char *p = r->agent; *p; p++)
    *p = (char)tolower((unsigned char)*p);
  return r;
}

static void free_rules(rule *rules, int n)
{
  for (int i = 0; i < n; i++)
    free(rules[i].pattern);
  free(rules);
}

void crawl_robots_free(crawl_robots *r)
{
  if (!r)
    return;
  for (entry *e = r->entries, *next; e; e = next) {
    next = e->next;
    free(e->origin);
    weft_chan_release(e->ready);
    free_rules(e->rules, e->nrules);
    free(e);
  }
  free(r->agent);
  free(r);
}

/* ---- parsing ---- */

/* 1 if the user-agent value v names agent (its product token, case-insensitively). */
static int agent_matches(const char *v, size_t n, const char *agent)
{
  size_t tn = 0;
  while (tn < n && v[tn] != '/' && !isspace((unsigned char)v[tn]))
    tn++;
  return tn == strlen(agent) && strncasecmp(v, agent, tn) == 0;
}

typedef struct rule_list {
  rule *r;
  int n, cap;
} rule_list;

static void rule_add(rule_list *l, bool allow, const char *v, size_t n)
{
  if (l->n == l->cap) {
    int cap = l->cap ? l->cap * 2 : 16;
    rule *p = realloc(l->r, (size_t)cap * sizeof *p);
    if (!p)
      return;
    l->r = p, l->cap = cap;
  }
  char *pat = strndup(v, n);
  if (pat)
    l->r[l->n++] = (rule){allow, pat};
}

/* One robots.txt line: key and value trimmed, comment cut; 0 if not a key: value line. */
static int split_line(const char *line, size_t len, const char **k, size_t *kn, const char **v,
                      size_t *vn)
{
  const char *hash = memchr(line, '#', len);
  if (hash)
    len = (size_t)(hash - line);
  const char *colon = memchr(line, ':', len);
  if (!colon)
    return 0;
  *k = line, *kn = (size_t)(colon - line);
  *v = colon + 1, *vn = len - *kn - 1;
  while (*kn > 0 && isspace((unsigned char)**k))
    (*k)++, (*kn)--;
  while (*kn > 0 && isspace((unsigned char)(*k)[*kn - 1]))
    (*kn)--;
  while (*vn > 0 && isspace((unsigned char)**v))
    (*v)++, (*vn)--;
  while (*vn > 0 && isspace((unsigned char)(*v)[*vn - 1]))
    (*vn)--;
  return 1;
}

static bool key_is(const char *k, size_t kn, const char *name)
{
  return kn == strlen(name) && strncasecmp(k, name, kn) == 0;
}

/* The rules for agent: its groups combined, else the "*" groups combined. */
static void parse_robots(const char *body, const char *agent, rule_list *out)
{
  rule_list mine = {0}, star = {0};
  bool in_rules = false, g_mine = false, g_star = false, found_mine = false;
  for (const char *line = body; *line;) {
    size_t len = strcspn(line, "\r\n");
    const char *k, *v;
    size_t kn, vn;
    if (split_line(line, len, &k, &kn, &v, &vn)) {
      if (key_is(k, kn, "user-agent")) {
        if (in_rules)
          g_mine = g_star = in_rules = false;
        g_star |= vn == 1 && v[0] == '*';
        g_mine |= agent_matches(v, vn, agent);
        found_mine |= g_mine;
      } else if (key_is(k, kn, "allow") || key_is(k, kn, "disallow")) {
        in_rules = true;
        bool allow = key_is(k, kn, "allow");
        if (vn > 0 && g_mine)
          rule_add(&mine, allow, v, vn);
        if (vn > 0 && g_star)
          rule_add(&star, allow, v, vn);
      }
    }
    line += len;
    line += strspn(line, "\r\n");
  }
  /* A group for us that holds no rules still means "everything allowed to us". */
  if (found_mine) {
    *out = mine;
    free_rules(star.r, star.n);
  } else {
    *out = star;
    free_rules(mine.r, mine.n);
  }
}

/* ---- matching ---- */

/* Does pattern (with '*' and a final '$') match the start of path? Greedy with
 * backtracking to the last star, linear in practice. */
static bool pattern_match(const char *pat, const char *path)
{
  size_t pn = strlen(pat);
  bool anchored = pn > 0 && pat[pn - 1] == '$';
  if (anchored)
    pn--;
  const char *star_p = NULL, *star_s = NULL;
  size_t i = 0;
  const char *s = path;
  for (;;) {
    if (i == pn) {
      if (!anchored || *s == '\0')
        return true;
    } else if (pat[i] == '*') {
      star_p = pat + ++i, star_s = s;
      continue;
    } else if (*s && *s == pat[i]) {
      i++, s++;
      continue;
    }
    if (!star_p || !*star_s)
      return false;
    i = (size_t)(star_p - pat);
    s = ++star_s;
  }
}

static bool rules_allow(const rule *rules, int n, const char *path)
{
  long best = -1;
  bool allowed = true;
  for (int i = 0; i < n; i++) {
    long len = (long)strlen(rules[i].pattern);
    if (len < best || !pattern_match(rules[i].pattern, path))
      continue;
    if (len > best || rules[i].allow)
      best = len, allowed = rules[i].allow;
  }
  return allowed;
}

int crawl_robots_check(const char *body, const char *agent, const char *path)
{
  rule_list l = {0};
  parse_robots(body, agent, &l);
  bool ok = rules_allow(l.r, l.n, path);
  free_rules(l.r, l.n);
  return ok;
}

/* ---- fetching and the cache ---- */

static void fetch_rules(crawl_robots *r, weft_http_client *cl, weft_ctx *ctx, entry *e)
{
  char url[1200];
  snprintf(url, sizeof url, "%s/robots.txt", e->origin);
  weft_http_client_response *resp = NULL;
  int rc = weft_http_client_get(cl, ctx, url, &resp);
  e->mode = ROBOTS_DISALLOW_ALL; /* unreachable */
  if (rc == 0) {
    int st = weft_http_client_response_status(resp);
    if (st >= 200 && st < 300) {
      rule_list l = {0};
      parse_robots(weft_http_client_response_body(resp, NULL), r->agent, &l);
      e->rules = l.r, e->nrules = l.n, e->mode = ROBOTS_RULES;
    } else if (st < 500) {
      e->mode = ROBOTS_ALLOW_ALL;
    }
  }
  weft_http_client_response_free(resp);
}

/* The entry for origin, and whether the caller must fetch it; NULL when out of memory. */
static entry *lookup(crawl_robots *r, const char *origin, bool *owner)
{
  weft_mutex_lock(&r->mu);
  entry *e = r->entries;
  while (e && strcmp(e->origin, origin) != 0)
    e = e->next;
  *owner = false;
  if (!e && (e = calloc(1, sizeof *e))) {
    e->origin = strdup(origin);
    e->ready = weft_chan_new(1, 0);
    if (!e->origin || !e->ready) {
      free(e->origin);
      weft_chan_release(e->ready);
      free(e);
      e = NULL;
    } else {
      e->next = r->entries, r->entries = e, *owner = true;
    }
  }
  weft_mutex_unlock(&r->mu);
  return e;
}

int crawl_robots_allowed(crawl_robots *r, weft_http_client *cl, weft_ctx *ctx,
                         const crawl_url *u)
{
  char *auth = crawl_url_authority(u);
  char origin[1100];
  snprintf(origin, sizeof origin, "%s://%s", u->scheme, auth ? auth : u->host);
  free(auth);
  if (strcmp(u->path, "/robots.txt") == 0 && !u->query)
    return 1;
  bool owner;
  entry *e = lookup(r, origin, &owner);
  if (!e)
    return 1;
  if (owner) {
    fetch_rules(r, cl, ctx, e);
    weft_chan_close(e->ready);
  } else if (weft_chan_recv_ctx(e->ready, NULL, ctx) != -EPIPE) {
    return weft_ctx_err(ctx) ? weft_ctx_err(ctx) : -ECANCELED;
  }
  if (weft_ctx_err(ctx))
    return weft_ctx_err(ctx);
  if (e->mode != ROBOTS_RULES)
    return e->mode == ROBOTS_ALLOW_ALL;
  size_t n = strlen(u->path) + (u->query ? strlen(u->query) + 1 : 0) + 1;
  char *path = malloc(n);
  if (!path)
    return 1;
  snprintf(path, n, "%s%s%s", u->path, u->query ? "?" : "", u->query ? u->query : "");
  int ok = rules_allow(e->rules, e->nrules, path);
  free(path);
  return ok;
}
