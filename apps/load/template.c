/* template.c: request templates (URL and body). A template is compiled once into parts,
 * literal text and substitutions, and rendered per request into the caller's buffer, so
 * rendering never parses and allocates only to grow that buffer. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "load.h"

enum part_kind { PART_TEXT, PART_ID, PART_SEQ, PART_RAND };

struct part {
  enum part_kind kind;
  const char *text; /* PART_TEXT: points into the template's copy */
  size_t len;
  uint64_t bound; /* PART_RAND: values in [0, bound) */
};

struct load_template {
  char *copy; /* the source text, which PART_TEXT parts point into */
  struct part *parts;
  int nparts;
};

static struct part *add_part(load_template *t, enum part_kind kind)
{
  struct part *p = realloc(t->parts, sizeof *p * (size_t)(t->nparts + 1));
  if (!p)
    return NULL;
  t->parts = p;
  p = &t->parts[t->nparts++];
  memset(p, 0, sizeof *p);
  p->kind = kind;
  return p;
}

/* One substitution's name (between the braces) into part p. 0, or -EINVAL. */
static int parse_sub(const char *name, size_t len, struct part *p)
{
  if (len == 2 && memcmp(name, "id", 2) == 0) {
    p->kind = PART_ID;
    return 0;
  }
  if (len == 3 && memcmp(name, "seq", 3) == 0) {
    p->kind = PART_SEQ;
    return 0;
  }
  if (len > 5 && memcmp(name, "rand:", 5) == 0) {
    char num[24], *end;
    if (len - 5 >= sizeof num)
      return -EINVAL;
    memcpy(num, name + 5, len - 5);
    num[len - 5] = '\0';
    unsigned long long n = strtoull(num, &end, 10);
    if (*end || n == 0 || num[0] == '-')
      return -EINVAL;
    p->kind = PART_RAND;
    p->bound = n;
    return 0;
  }
  return -EINVAL;
}

load_template *load_template_compile(const char *text, size_t len, char *err, size_t errlen)
{
  load_template *t = calloc(1, sizeof *t);
  if (!t || !(t->copy = malloc(len + 1)))
    goto err_nomem;
  memcpy(t->copy, text, len);
  t->copy[len] = '\0';
  for (size_t i = 0; i < len;) {
    const char *open = memmem(t->copy + i, len - i, "{{", 2);
    size_t lit = open ? (size_t)(open - t->copy) - i : len - i;
    struct part *p;
    if (lit > 0) {
      if (!(p = add_part(t, PART_TEXT)))
        goto err_nomem;
      p->text = t->copy + i;
      p->len = lit;
    }
    if (!open)
      break;
    const char *close = strstr(open + 2, "}}");
    if (!close) {
      snprintf(err, errlen, "unterminated {{ in template");
      goto err_free;
    }
    if (!(p = add_part(t, PART_TEXT)))
      goto err_nomem;
    if (parse_sub(open + 2, (size_t)(close - open - 2), p) < 0) {
      snprintf(err, errlen, "unknown substitution {{%.*s}} (use {{id}}, {{seq}}, {{rand:N}})",
               (int)(close - open - 2), open + 2);
      goto err_free;
    }
    i = (size_t)(close - t->copy) + 2;
  }
  return t;
err_nomem:
  snprintf(err, errlen, "out of memory");
err_free:
  load_template_free(t);
  return NULL;
}

void load_template_free(load_template *t)
{
  if (!t)
    return;
  free(t->copy);
  free(t->parts);
  free(t);
}

bool load_template_is_constant(const load_template *t)
{
  for (int i = 0; i < t->nparts; i++)
    if (t->parts[i].kind != PART_TEXT)
      return false;
  return true;
}

static uint64_t next_rand(uint64_t *s)
{
  /* xorshift64*: the state must never be 0. */
  uint64_t x = *s ? *s : 0x9e3779b97f4a7c15ULL;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *s = x;
  return x * 0x2545f4914f6cdd1dULL;
}

static void append(char **buf, size_t *cap, size_t *n, const char *s, size_t len)
{
  if (*n + len + 1 > *cap) {
    size_t want = (*n + len + 1) * 2;
    char *b = realloc(*buf, want);
    if (!b)
      abort(); /* a template render is small: out of memory here is fatal */
    *buf = b;
    *cap = want;
  }
  memcpy(*buf + *n, s, len);
  *n += len;
  (*buf)[*n] = '\0';
}

size_t load_template_render(const load_template *t, const char *stamp, uint64_t seq,
                            uint64_t *rng, char **buf, size_t *cap)
{
  size_t n = 0;
  char num[48];
  append(buf, cap, &n, "", 0);
  for (int i = 0; i < t->nparts; i++) {
    const struct part *p = &t->parts[i];
    int len = 0;
    switch (p->kind) {
    case PART_TEXT:
      append(buf, cap, &n, p->text, p->len);
      continue;
    case PART_ID:
      len = snprintf(num, sizeof num, "%s-%" PRIu64, stamp, seq);
      break;
    case PART_SEQ:
      len = snprintf(num, sizeof num, "%" PRIu64, seq);
      break;
    case PART_RAND:
      len = snprintf(num, sizeof num, "%" PRIu64, next_rand(rng) % p->bound);
      break;
    }
    append(buf, cap, &n, num, (size_t)len);
  }
  return n;
}
