/* http.c: the blocking HTTP test client (see http.h). */
#include "http.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include "fixture.h"

const char JSON_CT[] = "Content-Type: application/json\r\n";

void resp_free(struct resp *r)
{
  free(r->head);
  free(r->body);
  json_decref(r->json);
  memset(r, 0, sizeof *r);
}

const char *header(const struct resp *r, const char *name)
{
  static _Thread_local char ring[8][512];
  static _Thread_local int next;
  size_t nl = strlen(name);
  for (const char *p = r->head ? strstr(r->head, "\r\n") : NULL; p && p[2];
       p = strstr(p + 2, "\r\n")) {
    const char *line = p + 2;
    if (strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
      const char *v = line + nl + 1, *end = strstr(v, "\r\n");
      while (*v == ' ' || *v == '\t')
        v++;
      size_t len = end ? (size_t)(end - v) : strlen(v);
      char *slot = ring[next++ % 8];
      snprintf(slot, 512, "%.*s", (int)len, v);
      return slot;
    }
  }
  return NULL;
}

int connect_to(int port)
{
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  struct timeval tv = {20, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

static void send_all(int fd, const char *data, size_t len)
{
  while (len > 0) {
    ssize_t w = send(fd, data, len, MSG_NOSIGNAL);
    if (w <= 0)
      return; /* the server may answer and close before reading everything (413) */
    data += w, len -= (size_t)w;
  }
}

/* Decode a chunked body in place; its length. */
static size_t dechunk(char *b, size_t len)
{
  size_t in = 0, out = 0;
  while (in < len) {
    char *end;
    unsigned long n = strtoul(b + in, &end, 16);
    char *crlf = strstr(b + in, "\r\n");
    if (!crlf || n == 0)
      break;
    in = (size_t)(crlf - b) + 2;
    if (in + n > len)
      n = len - in;
    memmove(b + out, b + in, n);
    out += n, in += n + 2;
  }
  b[out] = '\0';
  return out;
}

/* How the body ends, from the head [buf, hend): its Content-Length (-1: none) and
 * whether it is chunked. */
static void body_framing(const char *buf, const char *hend, long *clen, bool *chunked)
{
  const char *cl = NULL, *te = NULL;
  for (const char *p = strstr(buf, "\r\n"); p && p < hend; p = strstr(p + 2, "\r\n")) {
    if (strncasecmp(p + 2, "Content-Length:", 15) == 0)
      cl = p + 17;
    if (strncasecmp(p + 2, "Transfer-Encoding:", 18) == 0)
      te = p + 20;
  }
  *clen = cl ? atol(cl) : -1;
  *chunked = te && strncasecmp(te + strspn(te, " "), "chunked", 7) == 0;
}

/* Whether buf (len bytes, head ending at hend) holds the whole response. */
static bool is_complete(const char *buf, size_t len, const char *hend, long clen, bool chunked)
{
  if (clen >= 0)
    return len >= (size_t)(hend + 4 - buf) + (size_t)clen;
  return chunked &&
         (strstr(hend + 4, "\r\n0\r\n\r\n") || strncmp(hend + 4, "0\r\n\r\n", 5) == 0);
}

/* r's head, body and JSON from the len bytes of buf whose head ends at hend. */
static void fill_resp(struct resp *r, const char *buf, size_t len, const char *hend, long clen,
                      bool chunked)
{
  size_t hlen = (size_t)(hend - buf) + 2;
  r->head = strndup(buf, hlen);
  size_t blen = len - hlen - 2;
  if (clen >= 0 && (size_t)clen < blen)
    blen = (size_t)clen;
  r->body = malloc(blen + 1);
  memcpy(r->body, hend + 4, blen);
  r->body[blen] = '\0';
  r->body_len = chunked ? dechunk(r->body, blen) : blen;
  r->json = json_loadb(r->body, r->body_len, 0, NULL);
  r->closing = strcasestr(r->head, "\r\nConnection: close") != NULL;
}

bool read_resp(int fd, struct resp *r)
{
  memset(r, 0, sizeof *r);
  size_t cap = 8192, len = 0;
  char *buf = malloc(cap), *hend = NULL;
  long clen = -1;
  bool chunked = false;
  for (;;) {
    if (len + 4096 >= cap) {
      size_t hoff = hend ? (size_t)(hend - buf) : 0;
      buf = realloc(buf, cap *= 2);
      hend = hend ? buf + hoff : NULL; /* the head's end moved with the buffer */
    }
    buf[len] = '\0';
    if (!hend && (hend = strstr(buf, "\r\n\r\n")))
      body_framing(buf, hend, &clen, &chunked);
    if (hend && is_complete(buf, len, hend, clen, chunked))
      break;
    ssize_t n = recv(fd, buf + len, cap - len - 1, 0);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    len += (size_t)n;
  }
  buf[len] = '\0';
  if (hend && sscanf(buf, "HTTP/1.%*d %d", &r->status) == 1)
    fill_resp(r, buf, len, hend, clen, chunked);
  else
    r->status = 0;
  free(buf);
  return r->status > 0;
}

void write_req(int fd, const char *method, const char *path, const char *extra,
               const char *body, size_t body_len, bool close_conn)
{
  char head[2048];
  int n = snprintf(head, sizeof head, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s%s", method, path,
                   close_conn ? "Connection: close\r\n" : "", extra ? extra : "");
  if (body)
    n += snprintf(head + n, sizeof head - (size_t)n, "Content-Length: %zu\r\n", body_len);
  n += snprintf(head + n, sizeof head - (size_t)n, "\r\n");
  send_all(fd, head, (size_t)n);
  if (body)
    send_all(fd, body, body_len);
}

void http(int port, const char *method, const char *path, const char *extra, const char *body,
          struct resp *r)
{
  memset(r, 0, sizeof *r);
  int64_t start = mono_ms();
  int fd = connect_to(port);
  if (fd < 0)
    return;
  write_req(fd, method, path, extra, body, body ? strlen(body) : 0, true);
  read_resp(fd, r);
  r->ms = mono_ms() - start;
  close(fd);
}
