/* weft/weft.h: everything public in weft. */
#ifndef WEFT_WEFT_H
#define WEFT_WEFT_H

#include "weft/blocking.h"
#include "weft/breaker.h"
#include "weft/chan.h"
#include "weft/clock.h"
#include "weft/common.h"
#include "weft/ctx.h"
#include "weft/debug.h"
#include "weft/debug_server.h"
#include "weft/error.h"
#include "weft/group.h"
#include "weft/http.h"
#include "weft/http_client.h"
#include "weft/io.h"
#include "weft/log.h"
#include "weft/metrics.h"
#include "weft/net.h"
#include "weft/pipeline.h"
#include "weft/pool.h"
#include "weft/ratelimit.h"
#include "weft/retry.h"
#include "weft/runtime.h"
#include "weft/signal.h"
#include "weft/signal_ctx.h"
#include "weft/sync.h"
#include "weft/tls.h"
#include "weft/trace.h"
#include "weft/watchdog.h"

#endif
