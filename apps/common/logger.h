/* logger.h: the logger behind the programs' --log-format and --log-level flags. */
#ifndef WEFT_APPS_COMMON_LOGGER_H
#define WEFT_APPS_COMMON_LOGGER_H

#include <stdbool.h>

#include <weft/log.h>

/* A new logger writing JSON lines (json) or text to stderr, dropping records below level
 * (WEFT_LOG_*). Returns it (release with weft_logger_release), or NULL when out of memory.
 * Any thread. */
weft_logger *app_logger_new(bool json, int level);

#endif
