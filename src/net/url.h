/* url.h: the http(s) URLs the HTTP client fetches, and RFC 3986 reference resolution for
 * redirects. Private to the net layer.
 *
 * Only absolute http:// and https:// URLs are accepted. The scheme and host are
 * case-insensitive and stored in lower case; a port defaults to 80 or 443; user
 * information ("user:pass@") is accepted and dropped (it is never sent); the fragment is
 * dropped. Bytes a request target may not carry (space, non-ASCII, '"', '<', '>', '\',
 * '^', '`', '{', '|', '}') are percent-encoded; control characters are rejected. Nothing
 * here parks or touches shared state: any thread. */
#ifndef WEFT_NET_URL_H
#define WEFT_NET_URL_H

#include <stdbool.h>
#include <stddef.h>

struct weft__url {
  bool https;      /* scheme https (else http) */
  char *host;      /* lower case, without brackets ("::1" for "[::1]"); owned */
  bool host_is_v6; /* host needs brackets in an address or a Host header */
  int port;        /* 1..65535, the scheme's default when absent */
  char *target;    /* request target: path and "?query", "/" when the path is empty; owned */
};

/* weft__url_parse: parse the absolute URL s into *u (zeroed first). Returns 0, -EINVAL
 * (not an http(s) URL, an empty or malformed host, a bad port, control characters) or
 * -ENOMEM. On failure *u holds nothing to free. */
int weft__url_parse(const char *s, struct weft__url *u);

/* weft__url_free: free what *u owns (safe on a zeroed or freed url). */
void weft__url_free(struct weft__url *u);

/* weft__url_authority: "host", "host:port", "[v6]" or "[v6]:port" into buf; the port is
 * written when with_port is set or it is not the scheme's default. Returns the length or
 * -ENOSPC when buf is too short. */
int weft__url_authority(const struct weft__url *u, bool with_port, char *buf, size_t len);

/* weft__url_resolve: resolve reference ref (a Location header: absolute, scheme-relative,
 * absolute-path, relative path, query-only...) against the absolute URL base, as RFC 3986
 * section 5.2 says (dot segments removed). Surrounding white space in ref is ignored. On
 * success *out is a new string (free()). Returns 0, -EINVAL (base is not absolute, ref
 * has control characters) or -ENOMEM. The result is not validated: parse it. */
int weft__url_resolve(const char *base, const char *ref, char **out);

#endif
