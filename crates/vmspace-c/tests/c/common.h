/* Helpers of the C tests: checks that name the line, mappings, residency by mincore. */
#ifndef VMSPACE_TEST_COMMON_H
#define VMSPACE_TEST_COMMON_H
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include "vm_reclaim.h"

#define CHECK(cond, ...) do { if (!(cond)) { \
	fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond); \
	fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); exit(1); } } while (0)
#define CHECK_KR(kr, want) do { mach_vm_reclaim_error_t k_ = (kr); \
	CHECK(k_ == (want), "%s returned 0x%x, want 0x%x", #kr, (unsigned)k_, (unsigned)(want)); } while (0)
#define OK(kr) CHECK_KR(kr, VM_RECLAIM_SUCCESS)

static inline size_t page_size(void) { return (size_t)sysconf(_SC_PAGESIZE); }

/* A fresh private anonymous mapping of `size` bytes, each set to `val` (xnu: mach_vm_map + memset). */
static inline mach_vm_address_t map_filled(size_t size, unsigned char val) {
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(p != MAP_FAILED, "mmap: %s", strerror(errno));
	memset(p, val, size);
	return (mach_vm_address_t)(uintptr_t)p;
}

static inline int all_bytes(mach_vm_address_t a, size_t size, unsigned char val) {
	const unsigned char *p = (const unsigned char *)(uintptr_t)a;
	for (size_t i = 0; i < size; i++)
		if (p[i] != val) return 0;
	return 1;
}

/* Resident pages of [a, a + size) by mincore; -1 if any of it is unmapped (ENOMEM). */
static inline long resident(mach_vm_address_t a, size_t size) {
	size_t n = (size + page_size() - 1) / page_size();
	unsigned char *v = malloc(n);
	CHECK(v != NULL, "malloc");
	if (mincore((void *)(uintptr_t)a, size, v) != 0) {
		int e = errno;
		free(v);
		CHECK(e == ENOMEM, "mincore: %s", strerror(e));
		return -1;
	}
	long r = 0;
	for (size_t i = 0; i < n; i++) r += v[i] & 1;
	free(v);
	return r;
}

/* xnu's ringbuffer_init: a ring of round_capacity(1) entries. */
static inline mach_vm_reclaim_ring_t ring_init(void) {
	mach_vm_reclaim_ring_t ring = NULL;
	mach_vm_reclaim_count_t len = mach_vm_reclaim_round_capacity(1);
	OK(mach_vm_reclaim_ring_allocate(&ring, len, len));
	CHECK(ring != NULL, "ring is allocated");
	return ring;
}

/* Enter with a new id, calling update_kernel_accounting when told to (xnu's allocate_and_defer_free). */
static inline mach_vm_reclaim_id_t defer(mach_vm_reclaim_ring_t ring, mach_vm_address_t a, size_t size,
    mach_vm_reclaim_action_t action) {
	mach_vm_reclaim_id_t id = VM_RECLAIM_ID_NULL;
	bool update = true;
	OK(mach_vm_reclaim_try_enter(ring, a, size, action, &id, &update));
	if (update) OK(mach_vm_reclaim_update_kernel_accounting(ring));
	return id;
}

/* xnu's try_cancel: cancel, update accounting if asked, and say whether the region is reusable. */
static inline bool cancel(mach_vm_reclaim_ring_t ring, mach_vm_reclaim_id_t id, mach_vm_address_t a, size_t size,
    mach_vm_reclaim_action_t action, mach_vm_reclaim_state_t *out) {
	mach_vm_reclaim_state_t state = 0;
	bool update = true;
	OK(mach_vm_reclaim_try_cancel(ring, id, a, size, action, &state, &update));
	if (update) OK(mach_vm_reclaim_update_kernel_accounting(ring));
	if (out) *out = state;
	return mach_vm_reclaim_is_reusable(state);
}
#endif
