/* A program written from the seed header (xnu's <mach/vm_reclaim.h>) alone: only its API, no
 * knowledge of this library. A tiny deferred-free cache of 1 MiB buffers, as libmalloc uses the ring. */
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS under -std=c11 */
#include <vm_reclaim.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#define SIZE (1u << 20)
#define N 8

int main(void) {
	mach_vm_reclaim_ring_t ring;
	mach_vm_reclaim_count_t cap = mach_vm_reclaim_round_capacity(64);
	mach_vm_reclaim_error_t kr = mach_vm_reclaim_ring_allocate(&ring, cap, cap);
	if (kr != VM_RECLAIM_SUCCESS) { fprintf(stderr, "allocate: 0x%x\n", (unsigned)kr); return 1; }
	void *buf[N];
	mach_vm_reclaim_id_t id[N];
	for (int i = 0; i < N; i++) {
		buf[i] = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (buf[i] == MAP_FAILED) return 1;
		memset(buf[i], 'a' + i, SIZE);
		bool update;
		id[i] = VM_RECLAIM_ID_NULL;
		kr = mach_vm_reclaim_try_enter(ring, (mach_vm_address_t)buf[i], SIZE, VM_RECLAIM_DEALLOCATE, &id[i], &update);
		if (kr != VM_RECLAIM_SUCCESS || id[i] == VM_RECLAIM_ID_NULL) return 1;
		if (update && mach_vm_reclaim_update_kernel_accounting(ring) != VM_RECLAIM_SUCCESS) return 1;
	}
	/* The oldest half goes back to the kernel; the newest half is reused. */
	if (mach_vm_reclaim_ring_flush(ring, N / 2) != VM_RECLAIM_SUCCESS) return 1;
	int reused = 0, gone = 0;
	for (int i = 0; i < N; i++) {
		mach_vm_reclaim_state_t state;
		bool update;
		kr = mach_vm_reclaim_try_cancel(ring, id[i], (mach_vm_address_t)buf[i], SIZE, VM_RECLAIM_DEALLOCATE, &state, &update);
		if (kr != VM_RECLAIM_SUCCESS) return 1;
		if (mach_vm_reclaim_is_reusable(state)) {
			if (((unsigned char *)buf[i])[SIZE - 1] != 'a' + i) return 1;
			reused++;
		} else {
			gone++;
		}
	}
	printf("seed-only: reused=%d reclaimed=%d\n", reused, gone);
	return reused == N / 2 && gone == N / 2 ? 0 : 1;
}
