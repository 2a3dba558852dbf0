/* fakeapi.c: the fake enrichment APIs (see fakeapi.h). */
#include "fakeapi.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include "fixture.h"
#include "weft_test.h"

struct fake_apis fake;
static const char *const api_prefix[NAPI] = {"/users/", "/geo/", "/rates/"};

/* The answer to GET path: status and body. */
static int answer(const char *path, char *body, size_t cap)
{
  int api = -1;
  for (int i = 0; i < NAPI; i++)
    if (strncmp(path, api_prefix[i], strlen(api_prefix[i])) == 0)
      api = i;
  if (api < 0)
    return snprintf(body, cap, "{}"), 404;
  const char *key = path + strlen(api_prefix[api]);
  atomic_fetch_add(&fake.hits[api], 1);
  if (atomic_load(&fake.delay_ms))
    sleep_ms(atomic_load(&fake.delay_ms));
  if (atomic_load(&fake.down[api]) || atomic_fetch_sub(&fake.fail_first[api], 1) > 0 ||
      (api == FX && strcmp(key, "XXX") == 0))
    return snprintf(body, cap, "{\"error\":\"down\"}"), 503;
  size_t kl = strlen(key);
  if (kl >= 3 && strcmp(key + kl - 3, "404") == 0)
    return snprintf(body, cap, "{\"error\":\"not found\"}"), 404;
  if (api == USERS)
    snprintf(body, cap, "{\"user_id\":\"%.200s\",\"tier\":\"gold\",\"country\":\"DE\"}", key);
  else if (api == GEO)
    snprintf(body, cap, "{\"ip\":\"%.200s\",\"country\":\"FR\",\"city\":\"Paris\"}", key);
  else
    snprintf(body, cap, "{\"currency\":\"%.200s\",\"usd_rate\":%s}", key,
             strcmp(key, "EUR") == 0 ? "1.25" : "2");
  return 200;
}

/* One keep-alive connection: a response per request head, until the peer closes. */
static void *conn_main(void *arg)
{
  int fd = (int)(intptr_t)arg;
  char buf[8192];
  size_t len = 0;
  for (;;) {
    char *end = memmem(buf, len, "\r\n\r\n", 4);
    if (!end) {
      ssize_t n = len < sizeof buf ? recv(fd, buf + len, sizeof buf - len, 0) : -1;
      if (n <= 0)
        break;
      len += (size_t)n;
      continue;
    }
    char path[1024] = "", body[512], resp[1024];
    sscanf(buf, "GET %1023s", path);
    int status = answer(path, body, sizeof body);
    int n = snprintf(resp, sizeof resp,
                     "HTTP/1.1 %d X\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n\r\n%s",
                     status, strlen(body), body);
    if (send(fd, resp, (size_t)n, MSG_NOSIGNAL) != n)
      break;
    size_t used = (size_t)(end + 4 - buf);
    memmove(buf, buf + used, len - used);
    len -= used;
  }
  shutdown(fd, SHUT_RDWR);
  return NULL;
}

static void *accept_main(void *arg)
{
  (void)arg;
  while (!atomic_load(&fake.stop)) {
    int c = accept(fake.fd, NULL, NULL);
    if (c < 0)
      continue;
    pthread_mutex_lock(&fake.mu);
    if (atomic_load(&fake.stop) || fake.nconns == FAKE_MAX_CONNS ||
        pthread_create(&fake.conns[fake.nconns], NULL, conn_main, (void *)(intptr_t)c))
      close(c);
    else
      fake.conn_fds[fake.nconns++] = c;
    pthread_mutex_unlock(&fake.mu);
  }
  return NULL;
}

void fake_start(void)
{
  memset(&fake, 0, sizeof fake);
  pthread_mutex_init(&fake.mu, NULL);
  fake.fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t al = sizeof a;
  assert_int_equal(bind(fake.fd, (struct sockaddr *)&a, sizeof a), 0);
  assert_int_equal(listen(fake.fd, 128), 0);
  getsockname(fake.fd, (struct sockaddr *)&a, &al);
  fake.port = ntohs(a.sin_port);
  snprintf(fake.url, sizeof fake.url, "http://127.0.0.1:%d", fake.port);
  assert_int_equal(pthread_create(&fake.acceptor, NULL, accept_main, NULL), 0);
}

void fake_stop(void)
{
  atomic_store(&fake.stop, true);
  shutdown(fake.fd, SHUT_RDWR);
  pthread_join(fake.acceptor, NULL);
  close(fake.fd);
  /* the acceptor has ended: conns and nconns no longer change */
  for (int i = 0; i < fake.nconns; i++) {
    shutdown(fake.conn_fds[i], SHUT_RDWR);
    pthread_join(fake.conns[i], NULL);
    close(fake.conn_fds[i]);
  }
  pthread_mutex_destroy(&fake.mu);
}
