/* body.h: the body of a confirmation (paymentd.md):
 *   {"amount_cents": 1..1000000000000, "currency": "EUR", "account": "1 to 64 characters"}
 * Unknown fields are ignored; of a key given twice the last value counts (as in jansson and
 * Go's encoding/json). Any thread. */
#ifndef PAYMENTD_BODY_H
#define PAYMENTD_BODY_H

#include <stddef.h>

#include "store.h"

/* pay_body_parse: validate the len bytes of body and set req's amount_cents, currency and
 * account. Returns NULL when valid, else the contract's error code ("invalid_json" or
 * "invalid_field") with *msg its message; req is then unchanged. */
const char *pay_body_parse(const char *body, size_t len, pay_record *req, const char **msg);

/* pay_body_parse_jansson: the same through jansson's tree alone, which pay_body_parse
 * falls back on for every body that is not a flat object of plain values; the reference
 * the tests hold pay_body_parse to. */
const char *pay_body_parse_jansson(const char *body, size_t len, pay_record *req,
                                   const char **msg);

#endif
