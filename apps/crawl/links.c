/* links.c: an HTML page's title and links, parsed with gumbo (the HTML5 algorithm, so
 * any byte soup yields a tree, as a browser would build it).
 *
 * The parse runs on weft's blocking pool: it is CPU work that would otherwise hold a
 * scheduler thread, and gumbo frees its tree recursively, which wants a thread's deep
 * stack rather than a coroutine's. The tree walk here is iterative. */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <gumbo.h>

#include "crawl.h"

/* A set of strings (open addressing), for distinct links. */
typedef struct strset {
  char **slot;
  size_t cap, n;
} strset;

static size_t hash_str(const char *s)
{
  size_t h = 1469598103934665603ull;
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h;
}

/* 1 if s was added (the set takes it), 0 if present, -ENOMEM. */
static int strset_add(strset *set, char *s)
{
  if ((set->n + 1) * 2 > set->cap) {
    size_t cap = set->cap ? set->cap * 2 : 64;
    char **slot = calloc(cap, sizeof *slot);
    if (!slot)
      return -ENOMEM;
    for (size_t i = 0; i < set->cap; i++) {
      if (!set->slot[i])
        continue;
      size_t j = hash_str(set->slot[i]) & (cap - 1);
      while (slot[j])
        j = (j + 1) & (cap - 1);
      slot[j] = set->slot[i];
    }
    free(set->slot);
    set->slot = slot, set->cap = cap;
  }
  size_t j = hash_str(s) & (set->cap - 1);
  for (; set->slot[j]; j = (j + 1) & (set->cap - 1))
    if (strcmp(set->slot[j], s) == 0)
      return 0;
  set->slot[j] = s;
  set->n++;
  return 1;
}

/* The parse's input and output, shared with the blocking pool thread. */
typedef struct parse_job {
  const char *body;
  size_t len;
  const char *url;
  crawl_page *page;
  char **links; /* in order found */
  int nlinks, cap;
  strset seen;
} parse_job;

static const char *attr(const GumboElement *el, const char *name)
{
  const GumboAttribute *a = gumbo_get_attribute(&el->attributes, name);
  return a ? a->value : NULL;
}

/* Append the text under node (iteratively) to the title buffer. */
static void collect_text(const GumboNode *node, char **buf, size_t *n)
{
  const GumboVector *kids = &node->v.element.children;
  for (unsigned i = 0; i < kids->length; i++) {
    const GumboNode *k = kids->data[i];
    if (k->type != GUMBO_NODE_TEXT && k->type != GUMBO_NODE_WHITESPACE)
      continue;
    size_t add = strlen(k->v.text.text);
    char *p = realloc(*buf, *n + add + 1);
    if (!p)
      return;
    memcpy(p + *n, k->v.text.text, add + 1);
    *buf = p, *n += add;
  }
}

static char *collapse_ws(const char *s)
{
  char *out = malloc(strlen(s) + 1), *o = out;
  if (!out)
    return NULL;
  bool space = false;
  for (; *s; s++) {
    if (isspace((unsigned char)*s)) {
      space = o != out;
      continue;
    }
    if (space)
      *o++ = ' ';
    space = false;
    *o++ = *s;
  }
  *o = '\0';
  return out;
}

static int add_link(parse_job *j, const char *base, const char *href)
{
  char *abs = crawl_url_resolve(base, href);
  if (!abs)
    return 0; /* another scheme, or malformed: not a link we count */
  int rc = strset_add(&j->seen, abs);
  if (rc <= 0) {
    free(abs);
    return rc;
  }
  if (j->nlinks == j->cap) {
    int cap = j->cap ? j->cap * 2 : 16;
    char **p = realloc(j->links, (size_t)cap * sizeof *p);
    if (!p)
      return -ENOMEM;
    j->links = p, j->cap = cap;
  }
  j->links[j->nlinks++] = abs;
  return 0;
}

/* Walk the tree in document order with an explicit stack: first <base href>, first
 * <title>, every <a href>. */
static long walk(parse_job *j, GumboNode *root)
{
  size_t cap = 256, top = 0;
  GumboNode **stack = malloc(cap * sizeof *stack);
  char *title = NULL, *base = NULL;
  size_t tn = 0;
  bool have_title = false, have_base = false;
  long rc = stack ? 0 : -ENOMEM;
  if (stack)
    stack[top++] = root;
  /* Links before a later <base> still resolve against it, as in a browser: do two
   * passes, the first only to find <base>. */
  for (int pass = 0; pass < 2 && rc == 0; pass++) {
    const char *page_base = base ? base : j->url;
    top = 0;
    stack[top++] = root;
    while (top > 0 && rc == 0) {
      GumboNode *n = stack[--top];
      if (n->type != GUMBO_NODE_ELEMENT && n->type != GUMBO_NODE_TEMPLATE)
        continue;
      GumboElement *el = &n->v.element;
      const char *href = attr(el, "href");
      if (pass == 0 && el->tag == GUMBO_TAG_BASE && href && !have_base) {
        have_base = true;
        base = crawl_url_resolve(j->url, href);
      } else if (pass == 1 && el->tag == GUMBO_TAG_TITLE && !have_title) {
        have_title = true;
        collect_text(n, &title, &tn);
      } else if (pass == 1 && el->tag == GUMBO_TAG_A && href) {
        rc = add_link(j, page_base, href);
      }
      if (top + el->children.length > cap) {
        cap = (top + el->children.length) * 2;
        GumboNode **p = realloc(stack, cap * sizeof *p);
        if (!p) {
          rc = -ENOMEM;
          break;
        }
        stack = p;
      }
      for (unsigned i = el->children.length; i-- > 0;)
        stack[top++] = el->children.data[i];
    }
  }
  j->page->title = collapse_ws(title ? title : "");
  if (!j->page->title)
    rc = -ENOMEM;
  free(title);
  free(base);
  free(stack);
  return rc;
}

static long parse_fn(void *arg)
{
  parse_job *j = arg;
  GumboOptions opts = kGumboDefaultOptions;
  opts.max_errors = 0; /* errors are not kept: we only want the tree */
  GumboOutput *out = gumbo_parse_with_options(&opts, j->body, j->len);
  if (!out)
    return -ENOMEM;
  long rc = walk(j, out->root);
  gumbo_destroy_output(&opts, out);
  return rc;
}

int crawl_parse_html(const char *body, size_t len, const char *url, crawl_page *page)
{
  memset(page, 0, sizeof *page);
  parse_job j = {.body = body, .len = len, .url = url, .page = page};
  long rc = weft_blocking(parse_fn, &j);
  free(j.seen.slot); /* the strings belong to j.links */
  page->links = j.links;
  page->nlinks = j.nlinks;
  if (rc < 0) {
    crawl_page_free(page);
    return (int)rc;
  }
  return 0;
}

void crawl_page_free(crawl_page *page)
{
  for (int i = 0; i < page->nlinks; i++)
    free(page->links[i]);
  free(page->links);
  free(page->title);
  memset(page, 0, sizeof *page);
}
