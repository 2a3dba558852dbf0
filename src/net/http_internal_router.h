/* http_internal_router.h: what the router (http_router.c) needs from the server's request
 * (http_request.c) beyond the public API. */
#ifndef WEFT_NET_HTTP_INTERNAL_ROUTER_H
#define WEFT_NET_HTTP_INTERNAL_ROUTER_H

#include "weft/http.h"

/* weft__http_request_set_pattern: record the pattern that matched r, for
 * weft_http_request_pattern. pattern is owned by the router, which outlives every request
 * it serves, so the request may keep the pointer (or copy it). Returns 0, or -ENOMEM when
 * a copy fails. Coroutine serving the request only; never parks. */
int weft__http_request_set_pattern(weft_http_request *r, const char *pattern);

#endif
