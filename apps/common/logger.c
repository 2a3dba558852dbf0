/* logger.c: app_logger_new (logger.h). The logger keeps its own reference to the
 * handler, so ours is released at once. */
#include "logger.h"

weft_logger *app_logger_new(bool json, int level)
{
  weft_log_options lo = {.level = level};
  weft_log_handler *h = json ? weft_log_json_handler_new(&lo) : weft_log_text_handler_new(&lo);
  weft_logger *l = h ? weft_logger_new(h) : NULL;
  weft_log_handler_release(h);
  return l;
}
