/* flags.h: the command line of the programs in apps/, from a table.
 *
 * Each program describes its flags in an array of app_flag (name, kind, where the value
 * goes, its range, what a valid value looks like) and calls app_flags_parse once, from
 * main, before the runtime starts. Flags are written "--name value", "--name=value", or
 * with one dash; a bool flag takes no separate value ("--insecure", "--robots=false").
 * "-h", "-help" and "--help" ask for the usage.
 *
 * Two ways to apply values, chosen by env_prefix:
 *   env_prefix set (paymentd "PAYMENTD_", weft-etl "ETL_"): each flag is also read from
 *     PREFIX_NAME (upper case, '-' as '_'); the command line wins, the last occurrence of a
 *     flag wins, and the values are applied once argv has been read, in table order, so a
 *     value overridden is never checked.
 *   env_prefix NULL: each occurrence is applied as argv is read, so a flag may be repeated
 *     (weft-upstream's --outage) and the first bad value ends the parse.
 *
 * The parser prints nothing: it returns what went wrong in an app_flag_error and the
 * program words its one line (app_flags_error_line gives the usual wording). */
#ifndef WEFT_APPS_COMMON_FLAGS_H
#define WEFT_APPS_COMMON_FLAGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What a flag's value is and where it goes (app_flag.value). */
typedef enum app_flag_kind {
  APP_FLAG_STRING,   /* const char *: argv's or the environment's text; length >= lo */
  APP_FLAG_INT,      /* an integer in [lo, hi]; value points at size bytes (int, long,...) */
  APP_FLAG_FLOAT,    /* double in [lo, hi] */
  APP_FLAG_DURATION, /* int64_t nanoseconds >= lo (values.h's syntax) */
  APP_FLAG_BOOL,     /* bool: true alone, or "=B" with B as app_parse_bool reads it */
  APP_FLAG_CHOICE,   /* the index in choices of the value, into an integer of size bytes */
  APP_FLAG_CUSTOM    /* parse(text, value) returns NULL, or what a valid value looks like */
} app_flag_kind;

typedef struct app_flag {
  const char *name; /* without dashes: "request-timeout" */
  app_flag_kind kind;
  void *value;   /* where the value is stored (by kind) */
  size_t size;   /* sizeof *value, for INT and CHOICE (1, 2, 4 or 8) */
  double lo, hi; /* the range (INT, FLOAT), least ns (DURATION), least length (STRING) */
  const char *const *choices;                       /* CHOICE: NULL-terminated */
  const char *(*parse)(const char *v, void *value); /* CUSTOM */
  const char *want; /* what a valid value looks like, for the message; may be NULL */
  bool seen;        /* set by app_flags_parse once a value was applied */
} app_flag;

/* Table entries; lvalue is the option's field, so the size is always right. */
#define APP_STRING(n, lvalue, minlen, w)                                                  \
  {                                                                                       \
    .name = (n), .kind = APP_FLAG_STRING, .value = &(lvalue), .lo = (minlen), .want = (w) \
  }
#define APP_INT(n, lvalue, min, max, w)                                            \
  {                                                                                \
    .name = (n), .kind = APP_FLAG_INT, .value = &(lvalue), .size = sizeof(lvalue), \
    .lo = (min), .hi = (max), .want = (w)                                          \
  }
#define APP_FLOAT(n, lvalue, min, max, w)                                              \
  {                                                                                    \
    .name = (n), .kind = APP_FLAG_FLOAT, .value = &(lvalue), .lo = (min), .hi = (max), \
    .want = (w)                                                                        \
  }
#define APP_DURATION(n, lvalue, min_ns, w)                                                  \
  {                                                                                         \
    .name = (n), .kind = APP_FLAG_DURATION, .value = &(lvalue), .lo = (min_ns), .want = (w) \
  }
#define APP_BOOL(n, lvalue)                                \
  {                                                        \
    .name = (n), .kind = APP_FLAG_BOOL, .value = &(lvalue) \
  }
#define APP_CHOICE(n, lvalue, names, w)                                               \
  {                                                                                   \
    .name = (n), .kind = APP_FLAG_CHOICE, .value = &(lvalue), .size = sizeof(lvalue), \
    .choices = (names), .want = (w)                                                   \
  }
#define APP_CUSTOM(n, ptr, fn, w)                                                    \
  {                                                                                  \
    .name = (n), .kind = APP_FLAG_CUSTOM, .value = (ptr), .parse = (fn), .want = (w) \
  }

/* One program's command line. */
typedef struct app_flags {
  app_flag *flags;
  size_t nflags;
  const char *env_prefix; /* "PAYMENTD_", or NULL: no environment (see above) */
  /* Where arguments that are not flags go, in order; NULL: each is an error. With it, "--"
   * ends the flags. Room for argc entries. */
  char **args;
  int nargs; /* set by app_flags_parse */
} app_flags;

typedef enum app_flag_problem {
  APP_FLAG_UNEXPECTED = 1, /* an argument that is not a flag, and args is NULL */
  APP_FLAG_UNKNOWN,        /* no such flag */
  APP_FLAG_NO_VALUE,       /* the last argument, and the flag needs a value */
  APP_FLAG_INVALID,        /* the value was refused */
  APP_FLAG_NO_MEMORY       /* the parser could not allocate its scratch space */
} app_flag_problem;

/* What went wrong: every pointer borrows from argv, the environment or the table. */
typedef struct app_flag_error {
  app_flag_problem problem;
  const char *arg;      /* the argument as written ("--nope=1"); NULL when INVALID with
                           env_prefix set (values applied after argv was read) */
  char name[64];        /* the flag's name as written, without dashes and value */
  const app_flag *flag; /* NO_VALUE and INVALID */
  const char *value;    /* INVALID */
  char env[80];         /* INVALID: the variable the value came from; "" for argv */
  const char *want;     /* INVALID: what a valid value looks like (flag->want or parse's) */
} app_flag_error;

/* Parse argv into the table's values. Returns 0, 1 when the usage was asked for (nothing
 * after it is read), or -1 with *err filled. Values applied before a problem stay
 * applied. Call from main before the runtime starts: it reads the environment. */
int app_flags_parse(app_flags *f, int argc, char **argv, app_flag_error *err);

/* The usual one line, without prog and newline: "unexpected argument X", "unknown flag
 * --X", "flag --X needs a value", "invalid --X \"V\": want W". Returns buf. */
const char *app_flags_error_line(const app_flag_error *err, char *buf, size_t len);

#endif
