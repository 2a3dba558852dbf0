/* http.h: a blocking HTTP/1.1 test client over loopback.
 *
 * Plain sockets with 20 s send and receive timeouts, so every call is bounded in time.
 * Responses are parsed whole: status line, headers, a Content-Length, chunked or
 * read-to-close body, and the body as JSON (jansson) when it is JSON. No state is shared:
 * every function may be called from any thread. */
#ifndef APP_HARNESS_HTTP_H
#define APP_HARNESS_HTTP_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct resp {
  int status; /* 0: no response */
  char *head; /* the status line and headers */
  char *body;
  size_t body_len;
  json_t *json; /* the body parsed, when it is JSON */
  int64_t ms;   /* from connect to the whole response (http only) */
  bool closing; /* the server said Connection: close */
};

extern const char JSON_CT[]; /* "Content-Type: application/json\r\n" */

void resp_free(struct resp *r);
/* The value of header name in r (a per-thread ring of 8 slots), or NULL. */
const char *header(const struct resp *r, const char *name);
/* A blocking loopback connection with 20 s send and receive timeouts, or -1. */
int connect_to(int port);
/* Read one response from fd into r (zeroed first); true when one came (r->status > 0). */
bool read_resp(int fd, struct resp *r);
/* Send a request; extra: header lines each ending in \r\n, or NULL. */
void write_req(int fd, const char *method, const char *path, const char *extra,
               const char *body, size_t body_len, bool close_conn);
/* One request on a new connection (Connection: close); r->status 0 when none came. */
void http(int port, const char *method, const char *path, const char *extra, const char *body,
          struct resp *r);

#endif
