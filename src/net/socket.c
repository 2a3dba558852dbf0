/* socket.c: addresses, name resolution, listening and dialling.
 *
 * Names go through getaddrinfo on the blocking pool (a scheduler thread never waits on
 * DNS); numeric hosts are parsed in place. Dialling tries each resolved address in turn,
 * as Go's dialer does without its Happy Eyeballs race. */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "ctx/ctx_io.h"
#include "weft/blocking.h"
#include "weft/error.h"
#include "weft/io.h"
#include "weft/net.h"
#include "weft/runtime.h"

int weft_split_host_port(const char *address, char *host, size_t host_len, char *port,
                         size_t port_len)
{
  if (!address || !host || !port)
    return -EINVAL;
  const char *colon, *h = address;
  size_t hlen;
  if (*address == '[') {
    const char *close = strchr(address, ']');
    if (!close || close[1] != ':')
      return -EINVAL;
    h = address + 1;
    hlen = (size_t)(close - h);
    colon = close + 1;
  } else {
    colon = strrchr(address, ':');
    if (!colon || memchr(address, ':', (size_t)(colon - address)))
      return -EINVAL; /* no port, or an unbracketed IPv6 address */
    hlen = (size_t)(colon - address);
  }
  size_t plen = strlen(colon + 1);
  if (hlen >= host_len || plen == 0 || plen >= port_len || memchr(h, '[', hlen) ||
      memchr(h, ']', hlen) || strchr(colon + 1, ':'))
    return -EINVAL; /* Go's rules: no stray brackets, no colon after "]:" */
  memcpy(host, h, hlen);
  host[hlen] = '\0';
  memcpy(port, colon + 1, plen + 1);
  return 0;
}

/* ---- resolution ---- */

struct lookup {
  char *host, *port;
  struct addrinfo hints;
  struct addrinfo *res;
};

static void lookup_free(struct lookup *l)
{
  if (l->res)
    freeaddrinfo(l->res);
  free(l->host);
  free(l->port);
  free(l);
}

static long lookup_run(void *arg)
{
  struct lookup *l = arg;
  return getaddrinfo(*l->host ? l->host : NULL, l->port, &l->hints, &l->res);
}

static void lookup_abandoned(void *arg, long result)
{
  lookup_free(arg);
}

static int resolve_error(long rc)
{
  switch (rc) {
  case 0:
    return 0;
  case EAI_MEMORY:
    return -ENOMEM;
  case EAI_SERVICE:
  case EAI_BADFLAGS:
  case EAI_FAMILY:
    return -EINVAL;
  default:
    return -WEFT_EDNS;
  }
}

static int resolve_flags(int family, const char *host, const char *port, int ai_flags,
                         weft_ctx *ctx, int64_t deadline, struct addrinfo **out)
{
  struct lookup *l = calloc(1, sizeof *l);
  if (!l || !(l->host = strdup(host)) || !(l->port = strdup(port))) {
    if (l)
      lookup_free(l);
    return -ENOMEM;
  }
  l->hints = (struct addrinfo){
      .ai_family = family, .ai_socktype = SOCK_STREAM, .ai_flags = ai_flags | AI_NUMERICHOST};
  if (lookup_run(l) == 0) { /* a numeric host: no need for the pool */
    *out = l->res;
    l->res = NULL;
    lookup_free(l);
    return 0;
  }
  l->hints.ai_flags = ai_flags | AI_ADDRCONFIG;
  weft_ctx *dctx = NULL;
  if (deadline != WEFT_NO_DEADLINE) {
    if (!(dctx = weft_ctx_with_deadline(ctx, deadline))) {
      lookup_free(l);
      return -ENOMEM;
    }
    ctx = dctx;
  }
  long rc = 0;
  int err = weft_blocking_ctx(ctx, lookup_run, l, &rc, lookup_abandoned);
  if (dctx) {
    weft_ctx_release(dctx);
  }
  if (err) {
    if (err == -ENOMEM)
      lookup_free(l); /* never handed to the pool: still ours (weft/ctx.h) */
    return err;       /* else ctx's error: l is freed by lookup_abandoned */
  }
  err = resolve_error(rc);
  *out = err ? NULL : l->res;
  if (!err)
    l->res = NULL;
  lookup_free(l);
  return err;
}

int weft_resolve(weft_ctx *ctx, const char *host, const char *port, int family,
                 int64_t deadline, struct addrinfo **out)
{
  if (!host || !port || !out ||
      (family != AF_UNSPEC && family != AF_INET && family != AF_INET6))
    return -EINVAL;
  return resolve_flags(family, host, port, 0, ctx, deadline, out);
}

/* ---- listening ---- */

static int network_family(const char *network)
{
  if (!network)
    return -1;
  if (!strcmp(network, "tcp"))
    return AF_UNSPEC;
  if (!strcmp(network, "tcp4"))
    return AF_INET;
  if (!strcmp(network, "tcp6"))
    return AF_INET6;
  if (!strcmp(network, "unix"))
    return AF_UNIX;
  return -1;
}

/* A Unix socket address for path ('@' first: the abstract namespace). */
static int unix_address(const char *path, struct sockaddr_un *sun, socklen_t *len)
{
  size_t n = strlen(path);
  if (n == 0 || n >= sizeof sun->sun_path)
    return -EINVAL;
  memset(sun, 0, sizeof *sun);
  sun->sun_family = AF_UNIX;
  memcpy(sun->sun_path, path, n);
  if (path[0] == '@')
    sun->sun_path[0] = '\0';
  *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (path[0] != '@'));
  return 0;
}

static int socket_for(int family)
{
  int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  return fd < 0 ? -errno : fd;
}

/* v6only: for an IPv6 socket, whether it refuses IPv4 ("tcp6") or takes both ("tcp"),
 * set either way rather than left to the net.ipv6.bindv6only sysctl (as Go does). */
static int listen_on(const struct sockaddr *sa, socklen_t len, int backlog, int v6only)
{
  int fd = socket_for(sa->sa_family);
  if (fd < 0)
    return fd;
  int one = 1;
  if (sa->sa_family != AF_UNIX)
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (sa->sa_family == AF_INET6)
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof v6only);
  if (bind(fd, sa, len) < 0 || listen(fd, backlog) < 0) {
    int err = -errno;
    close(fd);
    return err;
  }
  int err = weft_fd_register(fd);
  if (err) {
    close(fd);
    return err;
  }
  return fd;
}

int weft_listen(const char *network, const char *address, int backlog)
{
  int family = network_family(network);
  if (family < 0 || !address)
    return -EINVAL;
  if (backlog <= 0)
    backlog = SOMAXCONN;
  if (family == AF_UNIX) {
    struct sockaddr_un sun;
    socklen_t len;
    int err = unix_address(address, &sun, &len);
    return err ? err : listen_on((struct sockaddr *)&sun, len, backlog, 0);
  }
  char host[256], port[32];
  int err = weft_split_host_port(address, host, sizeof host, port, sizeof port);
  if (err)
    return err;
  struct addrinfo *res;
  int v6only = family == AF_INET6;
  int dual = !*host && family == AF_UNSPEC;
  if (dual)
    family = AF_INET6; /* ":port": every address, v4 too through the v6 socket */
  err = resolve_flags(family, host, port, AI_PASSIVE, NULL, WEFT_NO_DEADLINE, &res);
  if (err)
    return err;
  err = -EADDRNOTAVAIL;
  for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
    if ((err = listen_on(ai->ai_addr, ai->ai_addrlen, backlog, v6only)) >= 0)
      break;
  }
  freeaddrinfo(res);
  if (dual && err == -EAFNOSUPPORT) /* a kernel without IPv6: every v4 address */
    return weft_listen("tcp4", address, backlog);
  return err;
}

int weft_local_port(int fd)
{
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
    return -errno;
  if (ss.ss_family == AF_INET)
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
  if (ss.ss_family == AF_INET6)
    return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
  return -EINVAL;
}

/* ---- dialling ---- */

static int dial_one(const struct sockaddr *sa, socklen_t len, weft_ctx *ctx, int64_t deadline)
{
  int fd = socket_for(sa->sa_family);
  if (fd < 0)
    return fd;
  int err = weft__connect_ctx(fd, sa, len, ctx, deadline);
  if (err) {
    weft_close(fd);
    return err;
  }
  if (sa->sa_family != AF_UNIX) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  return fd;
}

int weft_dial(weft_ctx *ctx, const char *network, const char *address, int64_t deadline)
{
  int family = network_family(network);
  if (family < 0 || !address)
    return -EINVAL;
  if (family == AF_UNIX) {
    struct sockaddr_un sun;
    socklen_t len;
    int err = unix_address(address, &sun, &len);
    return err ? err : dial_one((struct sockaddr *)&sun, len, ctx, deadline);
  }
  char host[256], port[32];
  int err = weft_split_host_port(address, host, sizeof host, port, sizeof port);
  if (err)
    return err;
  struct addrinfo *res;
  if ((err = resolve_flags(family, *host ? host : "localhost", port, 0, ctx, deadline, &res)))
    return err;
  err = -EADDRNOTAVAIL;
  for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
    err = dial_one(ai->ai_addr, ai->ai_addrlen, ctx, deadline);
    if (err >= 0 || err == -ETIMEDOUT || err == -ECANCELED || weft_ctx_err(ctx))
      break;
  }
  freeaddrinfo(res);
  return err;
}
