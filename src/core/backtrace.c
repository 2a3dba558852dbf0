/* backtrace.c: stacks of coroutines for dumps: unwinding (libunwind) and naming frames
 * (libdw: function names, static ones included, and file:line when there is debug info).
 *
 * A parked coroutine's stack is unwound from its saved context: with the assembly
 * back ends, its saved stack pointer, under which weft__ctx_switch pushed the callee-saved
 * registers and its return address (switch_x86_64.S, switch_aarch64.S list the frame);
 * with the portable back end, the ucontext that swapcontext filled. These are the only
 * registers DWARF unwinding needs at a call site, so a ucontext holding them starts a
 * correct walk in the function that switched (switch_to). DWARF rather than frame
 * pointers: release builds use -O3 without them.
 *
 * The caller guarantees the coroutine does not run while its stack is read (dump.c's pin);
 * nothing here locks. Both libraries are optional (WEFT_HAVE_UNWIND, WEFT_HAVE_DW): without
 * libunwind no frames are collected; without libdw names come from dladdr (exported
 * symbols only) and there are no lines. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/dump.h"

#if WEFT_HAVE_UNWIND
#define UNW_LOCAL_ONLY
#include <libunwind.h>
#endif
#if WEFT_HAVE_DW
#include <elfutils/libdwfl.h>
#include <unistd.h>
#else
#include <dlfcn.h>
#endif

/* ---- unwinding ---- */

#if WEFT_HAVE_UNWIND

/* Another coroutine's stack was written by another thread: the sanitizers would see a
 * race or a poisoned frame where there is neither (the pin orders the accesses). */
__attribute__((no_sanitize("address", "thread"), unused)) static uintptr_t peek(const void *p)
{
  return *(const volatile uintptr_t *)p;
}

/* Fill uc from the frame weft__ctx_switch left: the state of the switching function just
 * after its call returns. */
static void fill_context(unw_context_t *uc, const struct ctx *ctx)
{
#if defined(WEFT_PORTABLE_SWITCH)
  memcpy(uc, &ctx->uc, sizeof ctx->uc < sizeof *uc ? sizeof ctx->uc : sizeof *uc);
#elif defined(__x86_64__)
  /* From sp up: MXCSR/x87 word, r15, r14, r13, r12, rbx, rbp, return address. */
  const uintptr_t *sp = ctx->sp;
  greg_t *g = uc->uc_mcontext.gregs;
  g[REG_R15] = (greg_t)peek(sp + 1);
  g[REG_R14] = (greg_t)peek(sp + 2);
  g[REG_R13] = (greg_t)peek(sp + 3);
  g[REG_R12] = (greg_t)peek(sp + 4);
  g[REG_RBX] = (greg_t)peek(sp + 5);
  g[REG_RBP] = (greg_t)peek(sp + 6);
  g[REG_RIP] = (greg_t)peek(sp + 7);
  g[REG_RSP] = (greg_t)(uintptr_t)(sp + 8);
#elif defined(__aarch64__)
  /* Slots 0-9 x19..x28, 10 fp, 11 lr; the frame is 176 bytes (switch_aarch64.S). */
  const uintptr_t *sp = ctx->sp;
  for (int i = 0; i < 12; i++)
    uc->uc_mcontext.regs[19 + i] = peek(sp + i);
  uc->uc_mcontext.pc = peek(sp + 11);
  uc->uc_mcontext.sp = (uintptr_t)sp + 176;
#else
#error "no saved-context layout for this architecture"
#endif
}

static int walk(unw_context_t *uc, uintptr_t *pcs, int max)
{
  unw_cursor_t cur;
  int n = 0;
  if (unw_init_local(&cur, uc) < 0)
    return WEFT__BT_NONE;
  do {
    unw_word_t ip = 0;
    if (unw_get_reg(&cur, UNW_REG_IP, &ip) < 0 || ip == 0)
      break;
    pcs[n++] = (uintptr_t)ip;
  } while (n < max && unw_step(&cur) > 0);
  return n;
}

int weft__bt_saved(const struct ctx *ctx, uintptr_t *pcs, int max)
{
  unw_context_t uc;
  unw_getcontext(&uc); /* valid values for everything fill_context does not set */
  fill_context(&uc, ctx);
  return walk(&uc, pcs, max);
}

int weft__bt_self(uintptr_t *pcs, int max, uintptr_t skip_pc)
{
  uintptr_t all[WEFT__BT_MAX + 16];
  unw_context_t uc;
  unw_getcontext(&uc);
  int n = walk(&uc, all, WEFT__BT_MAX + 16), from = 0;
  for (int i = 0; skip_pc && i < n; i++) {
    if (all[i] == skip_pc) {
      from = i;
      break;
    }
  }
  if (n - from > max)
    n = from + max;
  memcpy(pcs, all + from, sizeof *pcs * (size_t)(n - from));
  return n - from;
}

#else

int weft__bt_saved(const struct ctx *ctx, uintptr_t *pcs, int max)
{
  (void)ctx, (void)pcs, (void)max;
  return WEFT__BT_UNSUPPORTED;
}

int weft__bt_self(uintptr_t *pcs, int max, uintptr_t skip_pc)
{
  (void)pcs, (void)max, (void)skip_pc;
  return WEFT__BT_UNSUPPORTED;
}

#endif

/* The target of the direct call that returns to ret, or 0 (an indirect call, or an
 * architecture without a decoder). Lets a dump name the function called from a frame
 * even when that function's own frame is gone (a tail call inside it). */
__attribute__((no_sanitize("address", "thread"))) uintptr_t weft__bt_call_target(uintptr_t ret)
{
#if defined(__x86_64__)
  const volatile unsigned char *p = (const unsigned char *)ret - 5;
  if (p[0] != 0xe8) /* call rel32 */
    return 0;
  int32_t rel = (int32_t)((uint32_t)p[1] | (uint32_t)p[2] << 8 | (uint32_t)p[3] << 16 |
                          (uint32_t)p[4] << 24);
  return ret + (uintptr_t)(intptr_t)rel;
#elif defined(__aarch64__)
  uint32_t insn = *(const volatile uint32_t *)(ret - 4);
  if ((insn & 0xfc000000u) != 0x94000000u) /* bl imm26 */
    return 0;
  int32_t imm = (int32_t)(insn << 6) >> 6;
  return ret - 4 + (uintptr_t)((intptr_t)imm * 4);
#else
  (void)ret;
  return 0;
#endif
}

/* ---- symbols ---- */

/* Lookups are cached by pc: a dump of 10,000 coroutines parked at a few sites names a few
 * dozen distinct pcs, and a symbol-table search is linear in libdw. */
struct sym_slot {
  uintptr_t key; /* pc << 1 | ret_addr */
  bool used;
  struct weft__frame f;
};

struct weft__sym {
  struct sym_slot *slots;
  size_t cap, used;
  bool frozen; /* opened on a coroutine: no lookups beyond the cache */
#if WEFT_HAVE_DW
  Dwfl *dwfl;
#endif
};

static char *debuginfo_path_none = NULL;

static void sym_load(struct weft__sym *s)
{
#if WEFT_HAVE_DW
  static const Dwfl_Callbacks cb = {
      .find_elf = dwfl_linux_proc_find_elf,
      .find_debuginfo = dwfl_standard_find_debuginfo,
      .debuginfo_path = &debuginfo_path_none,
  };
  s->dwfl = dwfl_begin(&cb);
  if (s->dwfl) {
    dwfl_report_begin(s->dwfl);
    if (dwfl_linux_proc_report(s->dwfl, getpid()) != 0 ||
        dwfl_report_end(s->dwfl, NULL, NULL) != 0) {
      dwfl_end(s->dwfl);
      s->dwfl = NULL;
    }
  }
#else
  (void)debuginfo_path_none;
  (void)s;
#endif
}

void weft__sym_close(struct weft__sym *s)
{
  if (!s)
    return;
#if WEFT_HAVE_DW
  if (s->dwfl)
    dwfl_end(s->dwfl);
#endif
  free(s->slots);
  free(s);
}

static void resolve(struct weft__sym *s, uintptr_t pc, bool ret_addr, struct weft__frame *f)
{
  uintptr_t at = ret_addr ? pc - 1 : pc; /* the call instruction, not the one after */
  f->func = "?";
  f->off = 0;
  f->file = NULL;
  f->line = 0;
#if WEFT_HAVE_DW
  Dwfl_Module *m = s->dwfl ? dwfl_addrmodule(s->dwfl, at) : NULL;
  if (!m)
    return;
  GElf_Off off = 0;
  GElf_Sym sym;
  const char *name = dwfl_module_addrinfo(m, at, &off, &sym, NULL, NULL, NULL);
  if (name) {
    f->func = name;
    f->off = pc - (at - off);
  }
  Dwfl_Line *l = dwfl_module_getsrc(m, at);
  int line = 0;
  const char *file = l ? dwfl_lineinfo(l, NULL, &line, NULL, NULL, NULL) : NULL;
  if (file && line > 0) {
    f->file = file;
    f->line = line;
  }
#else
  Dl_info info;
  if (dladdr((void *)at, &info) && info.dli_sname) {
    f->func = info.dli_sname;
    f->off = pc - (uintptr_t)info.dli_saddr;
  }
  (void)s;
#endif
}

static bool grow(struct weft__sym *s)
{
  struct sym_slot *old = s->slots;
  size_t ocap = s->cap;
  struct sym_slot *slots = calloc(ocap * 2, sizeof *slots);
  if (!slots)
    return false;
  s->slots = slots;
  s->cap = ocap * 2;
  for (size_t i = 0; i < ocap; i++) {
    if (!old[i].used)
      continue;
    size_t j = (old[i].key * 0x9E3779B97F4A7C15ull >> 20) & (s->cap - 1);
    while (slots[j].used)
      j = (j + 1) & (s->cap - 1);
    slots[j] = old[i];
  }
  free(old);
  return true;
}

void weft__sym_lookup(struct weft__sym *s, uintptr_t pc, bool ret_addr, struct weft__frame *f)
{
  uintptr_t key = (pc << 1) | ret_addr;
  if (!s) {
    f->func = "?", f->off = 0, f->file = NULL, f->line = 0;
    return;
  }
  if (s->used * 2 >= s->cap && !grow(s)) {
    resolve(s, pc, ret_addr, f);
    return;
  }
  size_t j = (key * 0x9E3779B97F4A7C15ull >> 20) & (s->cap - 1);
  while (s->slots[j].used && s->slots[j].key != key)
    j = (j + 1) & (s->cap - 1);
  if (!s->slots[j].used) {
    if (s->frozen) { /* on a coroutine stack: see weft__sym_open */
      f->func = "?", f->off = 0, f->file = NULL, f->line = 0;
      return;
    }
    s->slots[j].used = true;
    s->slots[j].key = key;
    resolve(s, pc, ret_addr, &s->slots[j].f);
    s->used++;
  }
  *f = s->slots[j].f;
}

/* libdw needs more stack than a coroutine may have (reading a line table overflowed a
 * 128 KiB coroutine stack): the table is loaded and every pc of the snapshot resolved on a
 * helper thread with a normal stack, which the caller joins (its thread blocks; it does
 * not park). Afterwards lookups of other pcs from a coroutine find "?". */
struct sym_job {
  struct weft__sym *s;
  const struct weft__dump_snap *snap;
};

static void *sym_job_run(void *arg)
{
  struct sym_job *j = arg;
  struct weft__frame f;
  sym_load(j->s);
  for (long i = 0; j->snap && i < j->snap->n; i++) {
    const struct weft__dump_entry *e = &j->snap->e[i];
    for (int k = 0; k < e->npcs; k++) {
      weft__sym_lookup(j->s, e->pcs[k], true, &f);
      uintptr_t target = weft__bt_call_target(e->pcs[k]);
      if (target)
        weft__sym_lookup(j->s, target, false, &f);
    }
    if (e->creator_pc)
      weft__sym_lookup(j->s, e->creator_pc, true, &f);
  }
  return NULL;
}

struct weft__sym *weft__sym_open(const struct weft__dump_snap *snap)
{
  struct weft__sym *s = calloc(1, sizeof *s);
  if (!s)
    return NULL;
  s->cap = 256;
  s->slots = calloc(s->cap, sizeof *s->slots);
  if (!s->slots) {
    free(s);
    return NULL;
  }
  struct sym_job job = {s, snap};
  pthread_t t;
  if (pthread_create(&t, NULL, sym_job_run, &job) == 0)
    pthread_join(t, NULL);
  else if (!weft__current())
    sym_job_run(&job);
  s->frozen = weft__current() != NULL;
  return s;
}
