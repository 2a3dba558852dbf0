/* sanitizer.h: annotations that let AddressSanitizer and ThreadSanitizer follow the
 * coroutine switches. Each compiles to nothing in builds without that sanitizer. */
#ifndef WEFT_CORE_SANITIZER_H
#define WEFT_CORE_SANITIZER_H

#include <stddef.h>

#if defined(__SANITIZE_ADDRESS__)
#define WEFT_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define WEFT_ASAN 1
#endif
#endif

#if defined(__SANITIZE_THREAD__)
#define WEFT_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define WEFT_TSAN 1
#endif
#endif

#if WEFT_ASAN
void __sanitizer_start_switch_fiber(void **fake_stack_save, const void *bottom, size_t size);
void __sanitizer_finish_switch_fiber(void *fake_stack_save, const void **bottom_old,
                                     size_t *size_old);
#define ASAN_START_SWITCH(save, bottom, size) __sanitizer_start_switch_fiber(save, bottom, size)
#define ASAN_FINISH_SWITCH(save, bottom_old, size_old) \
  __sanitizer_finish_switch_fiber(save, bottom_old, size_old)
#else
#define ASAN_START_SWITCH(save, bottom, size)          ((void)0)
#define ASAN_FINISH_SWITCH(save, bottom_old, size_old) ((void)0)
#endif

#if WEFT_TSAN
void *__tsan_get_current_fiber(void);
void *__tsan_create_fiber(unsigned flags);
void __tsan_destroy_fiber(void *fiber);
void __tsan_switch_to_fiber(void *fiber, unsigned flags);
void __tsan_set_fiber_name(void *fiber, const char *name);
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
/* Happens-before edges through the kernel that ThreadSanitizer does not see. */
#define TSAN_ACQUIRE(addr) __tsan_acquire(addr)
#define TSAN_RELEASE(addr) __tsan_release(addr)
#else
#define TSAN_ACQUIRE(addr) ((void)0)
#define TSAN_RELEASE(addr) ((void)0)
#endif

#endif
