/* flags.c: app_flags_parse (flags.h). One pass over argv; with an environment prefix the
 * values are collected first (vals[], the command line over the environment) and applied
 * after, otherwise each is applied where it stands. The parser keeps no state between
 * calls and prints nothing. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flags.h"
#include "values.h"

/* Store v into an integer of size bytes at p. */
static void store_int(void *p, size_t size, long long v)
{
  switch (size) {
  case 1:
    *(int8_t *)p = (int8_t)v;
    break;
  case 2:
    *(int16_t *)p = (int16_t)v;
    break;
  case 4:
    *(int32_t *)p = (int32_t)v;
    break;
  default:
    *(int64_t *)p = (int64_t)v;
  }
}

static const char *apply_choice(app_flag *fl, const char *v)
{
  for (long long i = 0; fl->choices[i]; i++)
    if (!strcmp(v, fl->choices[i]))
      return store_int(fl->value, fl->size, i), NULL;
  return fl->want ? fl->want : "";
}

/* Apply text v (NULL: a bool flag written alone) to fl. NULL, or what a valid value
 * looks like ("" when the table says nothing). */
static const char *apply(app_flag *fl, const char *v)
{
  const char *bad = fl->want ? fl->want : "";
  long long n;
  double d;
  int64_t ns;
  switch (fl->kind) {
  case APP_FLAG_STRING:
    return strlen(v) < fl->lo ? bad : (*(const char **)fl->value = v, NULL);
  case APP_FLAG_INT:
    if (app_parse_int(v, (long long)fl->lo, (long long)fl->hi, &n))
      return bad;
    return store_int(fl->value, fl->size, n), NULL;
  case APP_FLAG_FLOAT:
    return app_parse_float(v, fl->lo, fl->hi, &d) ? bad : (*(double *)fl->value = d, NULL);
  case APP_FLAG_DURATION:
    if (app_parse_duration(v, &ns) || ns < fl->lo)
      return bad;
    return *(int64_t *)fl->value = ns, NULL;
  case APP_FLAG_BOOL:
    if (!v)
      return *(bool *)fl->value = true, NULL;
    return app_parse_bool(v, (bool *)fl->value) ? bad : NULL;
  case APP_FLAG_CHOICE:
    return apply_choice(fl, v);
  case APP_FLAG_CUSTOM:
    return fl->parse(v, fl->value);
  }
  return bad;
}

static app_flag *find(app_flags *f, const char *name, size_t len)
{
  for (size_t i = 0; i < f->nflags; i++)
    if (strlen(f->flags[i].name) == len && !strncmp(f->flags[i].name, name, len))
      return &f->flags[i];
  return NULL;
}

/* PREFIX_NAME of fl into buf. */
static void env_name(const app_flags *f, const app_flag *fl, char *buf, size_t len)
{
  size_t n = (size_t)snprintf(buf, len, "%s", f->env_prefix);
  for (const char *p = fl->name; *p && n + 1 < len; p++)
    buf[n++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
  buf[n < len ? n : len - 1] = '\0';
}

static int fail_invalid(app_flag_error *err, const app_flag *fl, const char *v,
                        const char *want)
{
  err->problem = APP_FLAG_INVALID;
  err->flag = fl;
  err->value = v;
  err->want = want;
  snprintf(err->name, sizeof err->name, "%s", fl->name);
  return -1;
}

/* Apply the collected values (the environment's under the command line's), in table
 * order. 0 or -1. */
static int apply_collected(app_flags *f, const char **vals, app_flag_error *err)
{
  for (size_t i = 0; i < f->nflags; i++) {
    app_flag *fl = &f->flags[i];
    char env[sizeof err->env] = "";
    const char *v = vals[i];
    if (!v) {
      env_name(f, fl, env, sizeof env);
      v = getenv(env);
    }
    if (!v)
      continue;
    const char *want = apply(fl, v);
    if (want) {
      snprintf(err->env, sizeof err->env, "%s", vals[i] ? "" : env);
      err->arg = NULL;
      return fail_invalid(err, fl, v, want);
    }
    fl->seen = true;
  }
  return 0;
}

/* The flag at argv[*i], applied or collected into vals. 0, or -1 with err filled. */
static int take_flag(app_flags *f, int argc, char **argv, int *i, const char **vals,
                     app_flag_error *err)
{
  const char *a = argv[*i] + 1 + (argv[*i][1] == '-');
  const char *eq = strchr(a, '=');
  size_t len = eq ? (size_t)(eq - a) : strlen(a);
  err->arg = argv[*i];
  snprintf(err->name, sizeof err->name, "%.*s", (int)len, a);
  app_flag *fl = find(f, a, len);
  if (!fl)
    return err->problem = APP_FLAG_UNKNOWN, -1;
  const char *v = eq ? eq + 1 : NULL;
  if (!v && fl->kind != APP_FLAG_BOOL) {
    if (*i + 1 >= argc)
      return err->flag = fl, err->problem = APP_FLAG_NO_VALUE, -1;
    v = argv[++*i];
  }
  if (f->env_prefix) {
    vals[fl - f->flags] = v ? v : "true";
    return 0;
  }
  const char *want = apply(fl, v);
  if (want)
    return fail_invalid(err, fl, v, want);
  fl->seen = true;
  return 0;
}

static bool is_help(const char *a)
{
  return !strcmp(a, "-h") || !strcmp(a, "--help") || !strcmp(a, "-help");
}

int app_flags_parse(app_flags *f, int argc, char **argv, app_flag_error *err)
{
  const char **vals = calloc(f->nflags + 1, sizeof *vals);
  bool flags = true;
  int rc = 0;
  *err = (app_flag_error){0};
  f->nargs = 0;
  if (!vals)
    return err->problem = APP_FLAG_NO_MEMORY, -1;
  for (int i = 1; i < argc && rc == 0; i++) {
    const char *a = argv[i];
    if (flags && f->args && !strcmp(a, "--"))
      flags = false;
    else if (flags && is_help(a))
      rc = 1;
    else if (flags && a[0] == '-' && a[1] != '\0')
      rc = take_flag(f, argc, argv, &i, vals, err);
    else if (f->args)
      f->args[f->nargs++] = argv[i];
    else
      err->problem = APP_FLAG_UNEXPECTED, err->arg = a, rc = -1;
  }
  if (rc == 0 && f->env_prefix)
    rc = apply_collected(f, vals, err);
  free(vals);
  return rc;
}

const char *app_flags_error_line(const app_flag_error *err, char *buf, size_t len)
{
  switch (err->problem) {
  case APP_FLAG_UNEXPECTED:
    snprintf(buf, len, "unexpected argument %s", err->arg);
    break;
  case APP_FLAG_UNKNOWN:
    snprintf(buf, len, "unknown flag --%s", err->name);
    break;
  case APP_FLAG_NO_VALUE:
    snprintf(buf, len, "flag --%s needs a value", err->name);
    break;
  case APP_FLAG_INVALID:
    snprintf(buf, len, "invalid --%s \"%s\": want %s", err->name, err->value, err->want);
    break;
  default:
    snprintf(buf, len, "out of memory");
  }
  return buf;
}
