/* Many threads sharing the ring with their own locking (libmalloc's pattern: try_enter / try_cancel
 * under the caller's lock, flush and update_kernel_accounting without it), while the reclaimer
 * thread works too. Every region a cancel gives back as UNRECLAIMED must hold exactly what its owner
 * wrote; a DEALLOCATED or BUSY one is never touched again. */
#include "common.h"
#include <pthread.h>

#define THREADS 6
#define ROUNDS 400
#define HELD 8

static mach_vm_reclaim_ring_t ring;
static pthread_mutex_t ring_lock = PTHREAD_MUTEX_INITIALIZER;
static volatile int stop_flusher;
static unsigned long counts[THREADS][5]; /* entered, unreclaimed, deallocated, busy, full */

struct held { mach_vm_address_t a; size_t size; mach_vm_reclaim_id_t id; unsigned char val; };

static void take_back(int t, struct held *h) {
	mach_vm_reclaim_state_t s = 0;
	bool update = false;
	pthread_mutex_lock(&ring_lock);
	mach_vm_reclaim_error_t kr = mach_vm_reclaim_try_cancel(ring, h->id, h->a, h->size, VM_RECLAIM_DEALLOCATE, &s, &update);
	pthread_mutex_unlock(&ring_lock);
	CHECK(kr == VM_RECLAIM_SUCCESS, "cancel: 0x%x", (unsigned)kr);
	if (update) OK(mach_vm_reclaim_update_kernel_accounting(ring));
	if (s == VM_RECLAIM_UNRECLAIMED) {
		CHECK(all_bytes(h->a, h->size, h->val), "thread %d: an unreclaimed region kept its contents", t);
		counts[t][1]++;
		munmap((void *)(uintptr_t)h->a, h->size);
	} else if (s == VM_RECLAIM_DEALLOCATED) {
		counts[t][2]++;
	} else {
		CHECK(s == VM_RECLAIM_BUSY, "state %u", s);
		counts[t][3]++;
	}
}

static void *worker(void *arg) {
	int t = (int)(intptr_t)arg;
	struct held held[HELD];
	int n = 0;
	unsigned seed = (unsigned)t * 2654435761u;
	for (int r = 0; r < ROUNDS; r++) {
		seed = seed * 1103515245u + 12345u;
		size_t size = page_size() * (1 + (seed >> 16) % 16);
		unsigned char val = (unsigned char)(t * 31 + r);
		mach_vm_address_t a = map_filled(size, val);
		mach_vm_reclaim_id_t id = VM_RECLAIM_ID_NULL;
		bool update = false;
		pthread_mutex_lock(&ring_lock);
		mach_vm_reclaim_error_t kr = mach_vm_reclaim_try_enter(ring, a, size, VM_RECLAIM_DEALLOCATE, &id, &update);
		pthread_mutex_unlock(&ring_lock);
		CHECK(kr == VM_RECLAIM_SUCCESS, "enter: 0x%x", (unsigned)kr);
		if (update) OK(mach_vm_reclaim_update_kernel_accounting(ring));
		if (id == VM_RECLAIM_ID_NULL) { /* full: keep it ourselves */
			counts[t][4]++;
			munmap((void *)(uintptr_t)a, size);
			continue;
		}
		counts[t][0]++;
		if (n == HELD) take_back(t, &held[(seed >> 8) % HELD]), held[(seed >> 8) % HELD] = held[--n];
		held[n++] = (struct held){a, size, id, val};
	}
	while (n > 0) take_back(t, &held[--n]);
	return NULL;
}

static void *flusher(void *arg) {
	(void)arg;
	while (!stop_flusher) {
		OK(mach_vm_reclaim_ring_flush(ring, 16));
		OK(mach_vm_reclaim_update_kernel_accounting(ring));
		sched_yield();
	}
	return NULL;
}

int main(void) {
	OK(mach_vm_reclaim_ring_allocate(&ring, mach_vm_reclaim_round_capacity(2048), mach_vm_reclaim_round_capacity(2048)));
	pthread_t w[THREADS], f;
	CHECK(pthread_create(&f, NULL, flusher, NULL) == 0, "pthread_create");
	for (int t = 0; t < THREADS; t++) CHECK(pthread_create(&w[t], NULL, worker, (void *)(intptr_t)t) == 0, "create");
	for (int t = 0; t < THREADS; t++) pthread_join(w[t], NULL);
	stop_flusher = 1;
	pthread_join(f, NULL);
	unsigned long sum[5] = {0};
	for (int t = 0; t < THREADS; t++)
		for (int k = 0; k < 5; k++) sum[k] += counts[t][k];
	CHECK(sum[0] == sum[1] + sum[2] + sum[3], "every entry came back once: %lu = %lu + %lu + %lu", sum[0], sum[1], sum[2], sum[3]);
	CHECK(sum[0] + sum[4] == THREADS * ROUNDS, "every region accounted for");
	CHECK(sum[1] > 0 && sum[2] > 0, "both outcomes seen: %lu unreclaimed, %lu deallocated", sum[1], sum[2]);
	printf("ok threads entered=%lu unreclaimed=%lu deallocated=%lu busy=%lu full=%lu\n", sum[0], sum[1], sum[2], sum[3], sum[4]);
	return 0;
}
