/* Ports of xnu's tests/vm/vm_reclaim.c, one case per process (the ring is one per process):
 * ./ring CASE. Exit 0 when every check holds; a failed check prints its line and exits 1. */
#include "common.h"
#include <signal.h>
#include <sys/wait.h>
#include <time.h>

#define MiB(x) ((size_t)(x) << 20)

static void case_init(void) {
	mach_vm_reclaim_ring_t ring = ring_init();
	mach_vm_reclaim_count_t cap = 0;
	OK(mach_vm_reclaim_ring_capacity(ring, &cap));
	CHECK(cap == mach_vm_reclaim_round_capacity(1), "capacity %u", cap);
	/* One page of 16-byte entries after the library's 64-byte header. */
	CHECK(cap == (page_size() - 64) / 16, "capacity %u fills one page", cap);
	mach_vm_reclaim_state_t s;
	CHECK_KR(mach_vm_reclaim_query_state(ring, 0, VM_RECLAIM_DEALLOCATE, &s), VM_RECLAIM_INVALID_ID);
}

static void case_single_entry(void) {
	mach_vm_reclaim_ring_t ring = ring_init();
	mach_vm_address_t a = map_filled(MiB(1), 1);
	CHECK(defer(ring, a, MiB(1), VM_RECLAIM_DEALLOCATE) == 0, "entry placed at start of ring");
	mach_vm_reclaim_state_t s;
	OK(mach_vm_reclaim_query_state(ring, 0, VM_RECLAIM_DEALLOCATE, &s));
	CHECK(s == VM_RECLAIM_UNRECLAIMED, "state %u before flush", s);
	OK(mach_vm_reclaim_ring_flush(ring, 1));
	OK(mach_vm_reclaim_query_state(ring, 0, VM_RECLAIM_DEALLOCATE, &s));
	CHECK(s == VM_RECLAIM_DEALLOCATED, "state %u after flush", s);
	CHECK(resident(a, MiB(1)) == -1, "the region is unmapped after DEALLOCATE");
}

/* xnu's reuse_reclaimed_entry(VM_RECLAIM_DEALLOCATE) + vm_reclaim_single_entry_verify_free. */
static void case_reuse_dealloc(void) {
	mach_vm_reclaim_ring_t ring = ring_init();
	mach_vm_address_t a = map_filled(MiB(1), 220);
	CHECK(resident(a, MiB(1)) == (long)(MiB(1) / page_size()), "touched pages are resident");
	mach_vm_reclaim_id_t id = defer(ring, a, MiB(1), VM_RECLAIM_DEALLOCATE);
	CHECK(id == 0, "id %" PRIu64, id);
	OK(mach_vm_reclaim_ring_flush(ring, 10));
	mach_vm_reclaim_state_t s;
	CHECK(!cancel(ring, id, a, MiB(1), VM_RECLAIM_DEALLOCATE, &s), "a deallocated entry is not reusable");
	CHECK(s == VM_RECLAIM_DEALLOCATED, "state %u", s);
	CHECK(resident(a, MiB(1)) == -1, "mincore: the pages are gone");
	pid_t pid = fork();
	CHECK(pid >= 0, "fork");
	if (pid == 0) {
		volatile unsigned char *p = (volatile unsigned char *)(uintptr_t)a;
		(void)p[0]; /* must fault */
		_exit(0);
	}
	int status;
	CHECK(waitpid(pid, &status, 0) == pid, "waitpid");
	CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV, "touching it crashes with SIGSEGV (status %d)", status);
}

/* xnu's reuse_reclaimed_entry(VM_RECLAIM_FREE): still mapped, readable and writable. */
static void case_reuse_free(void) {
	mach_vm_reclaim_ring_t ring = ring_init();
	mach_vm_address_t a = map_filled(MiB(1), 220);
	mach_vm_reclaim_id_t id = defer(ring, a, MiB(1), VM_RECLAIM_FREE);
	CHECK(id == 0, "id %" PRIu64, id);
	OK(mach_vm_reclaim_ring_flush(ring, 10));
	mach_vm_reclaim_state_t s;
	CHECK(cancel(ring, id, a, MiB(1), VM_RECLAIM_FREE, &s), "a freed entry is reusable");
	CHECK(s == VM_RECLAIM_FREED, "state %u", s);
	CHECK(resident(a, MiB(1)) >= 0, "still mapped");
	volatile unsigned char *p = (volatile unsigned char *)(uintptr_t)a;
	unsigned sum = 0;
	for (size_t i = 0; i < MiB(1); i++) sum += p[i]; /* every byte readable */
	memset((void *)(uintptr_t)a, 7, MiB(1));
	CHECK(all_bytes(a, MiB(1), 7), "writable again (sum %u)", sum);
}

/* A cancel that says UNRECLAIMED gives the region back untouched: contents and residency kept. */
static void case_cancel_keeps(void) {
	mach_vm_reclaim_ring_t ring = ring_init();
	mach_vm_address_t a = map_filled(MiB(2), 0x5a);
	long pages = (long)(MiB(2) / page_size());
	mach_vm_reclaim_id_t id = defer(ring, a, MiB(2), VM_RECLAIM_DEALLOCATE);
	mach_vm_reclaim_state_t s;
	CHECK(cancel(ring, id, a, MiB(2), VM_RECLAIM_DEALLOCATE, &s), "reusable");
	CHECK(s == VM_RECLAIM_UNRECLAIMED, "state %u", s);
	OK(mach_vm_reclaim_ring_flush(ring, 100)); /* passes the hole, touches nothing */
	CHECK(resident(a, MiB(2)) == pages, "all %ld pages still resident", pages);
	CHECK(all_bytes(a, MiB(2), 0x5a), "contents kept");
	/* A second cancel of the same id is misuse: an error, not a trap. */
	mach_vm_reclaim_state_t s2 = 0;
	bool u;
	mach_vm_reclaim_error_t kr = mach_vm_reclaim_try_cancel(ring, id, a, MiB(2), VM_RECLAIM_DEALLOCATE, &s2, &u);
	CHECK(kr == VM_RECLAIM_SUCCESS ? s2 == VM_RECLAIM_DEALLOCATED : kr == VM_RECLAIM_INVALID_ID,
	    "double cancel: 0x%x state %u", (unsigned)kr, s2);
}

/* Reuse of ids: a cancelled slot takes a new region under the same id (xnu's compact path). */
static void case_reuse_id(void) {
	mach_vm_reclaim_ring_t ring = ring_init();
	size_t ps = page_size();
	mach_vm_address_t a = map_filled(ps, 'a'), b = map_filled(ps, 'b'), c = map_filled(ps, 'c');
	CHECK(defer(ring, a, ps, VM_RECLAIM_DEALLOCATE) == 0, "a is 0");
	CHECK(defer(ring, b, ps, VM_RECLAIM_DEALLOCATE) == 1, "b is 1");
	bool u;
	mach_vm_reclaim_state_t s;
	/* Misuse of a live entry: wrong size / address / action, and a double cancel of a hole. */
	CHECK_KR(mach_vm_reclaim_try_cancel(ring, 0, a, 2 * ps, VM_RECLAIM_DEALLOCATE, &s, &u), VM_RECLAIM_INVALID_ARGUMENT);
	CHECK_KR(mach_vm_reclaim_try_cancel(ring, 0, b, ps, VM_RECLAIM_DEALLOCATE, &s, &u), VM_RECLAIM_INVALID_ARGUMENT);
	CHECK_KR(mach_vm_reclaim_try_cancel(ring, 0, a, ps, VM_RECLAIM_FREE, &s, &u), VM_RECLAIM_INVALID_ARGUMENT);
	CHECK_KR(mach_vm_reclaim_try_cancel(ring, 7, a, ps, VM_RECLAIM_DEALLOCATE, &s, &u), VM_RECLAIM_INVALID_ID);
	CHECK(cancel(ring, 0, a, ps, VM_RECLAIM_DEALLOCATE, &s) && s == VM_RECLAIM_UNRECLAIMED, "a back");
	CHECK_KR(mach_vm_reclaim_try_cancel(ring, 0, a, ps, VM_RECLAIM_DEALLOCATE, &s, &u), VM_RECLAIM_INVALID_ID);
	/* The hole of 0 takes c; 1 is occupied, so it cannot be reused. */
	mach_vm_reclaim_id_t id = 1;
	CHECK_KR(mach_vm_reclaim_try_enter(ring, c, ps, VM_RECLAIM_DEALLOCATE, &id, &u), VM_RECLAIM_INVALID_ID);
	CHECK(id == VM_RECLAIM_ID_NULL, "id written NULL on error");
	id = 0;
	OK(mach_vm_reclaim_try_enter(ring, c, ps, VM_RECLAIM_DEALLOCATE, &id, &u));
	CHECK(id == 0, "slot 0 reused: %" PRIu64, id);
	CHECK(defer(ring, a, ps, VM_RECLAIM_DEALLOCATE) == 2, "the tail did not move for the reuse");
	OK(mach_vm_reclaim_ring_flush(ring, 3));
	CHECK(resident(a, ps) == -1 && resident(b, ps) == -1 && resident(c, ps) == -1, "all three gone");
	/* Reusing an id the reclaimer has passed answers success with VM_RECLAIM_ID_NULL. */
	mach_vm_address_t d = map_filled(ps, 'd');
	id = 0;
	OK(mach_vm_reclaim_try_enter(ring, d, ps, VM_RECLAIM_DEALLOCATE, &id, &u));
	CHECK(id == VM_RECLAIM_ID_NULL, "passed hole: %" PRIu64, id);
	CHECK(all_bytes(d, ps, 'd'), "d untouched");
}

/* A full ring: success with VM_RECLAIM_ID_NULL, the region not entered. */
static void case_full(void) {
	mach_vm_reclaim_ring_t ring = ring_init();
	mach_vm_reclaim_count_t cap;
	OK(mach_vm_reclaim_ring_capacity(ring, &cap));
	size_t ps = page_size();
	mach_vm_address_t base = map_filled((size_t)(cap + 1) * ps, 'A');
	for (mach_vm_reclaim_count_t i = 0; i < cap; i++)
		CHECK(defer(ring, base + (mach_vm_address_t)i * ps, ps, VM_RECLAIM_DEALLOCATE) == i, "id %u", i);
	mach_vm_address_t last = base + (mach_vm_address_t)cap * ps;
	CHECK(defer(ring, last, ps, VM_RECLAIM_DEALLOCATE) == VM_RECLAIM_ID_NULL, "unable to over-fill");
	OK(mach_vm_reclaim_ring_flush(ring, 1));
	CHECK(defer(ring, last, ps, VM_RECLAIM_DEALLOCATE) == cap, "room after a flush of one");
	CHECK(resident(base, ps) == -1 && all_bytes(base + ps, ps, 'A'), "only the oldest went");
}

/* Errors: bad arguments, sizes, capacities, handles and null pointers; never a crash. */
static void case_errors(void) {
	mach_vm_reclaim_ring_t ring = NULL;
	CHECK_KR(mach_vm_reclaim_ring_allocate(NULL, 1, 1), VM_RECLAIM_INVALID_ARGUMENT);
	CHECK_KR(mach_vm_reclaim_ring_allocate(&ring, 0, 1), VM_RECLAIM_INVALID_ARGUMENT);
	CHECK_KR(mach_vm_reclaim_ring_allocate(&ring, 2, 1), VM_RECLAIM_INVALID_ARGUMENT);
	CHECK_KR(mach_vm_reclaim_ring_allocate(&ring, 1, UINT32_MAX), VM_RECLAIM_INVALID_CAPACITY);
	CHECK(ring == NULL, "no ring on error");
	/* Before any ring exists every handle is bad. */
	mach_vm_reclaim_count_t cap;
	CHECK_KR(mach_vm_reclaim_ring_capacity(NULL, &cap), VM_RECLAIM_INVALID_RING);
	CHECK(mach_vm_reclaim_round_capacity(UINT32_MAX) > 0, "round_capacity clamps");
	CHECK(mach_vm_reclaim_round_capacity(0) == mach_vm_reclaim_round_capacity(1), "0 rounds like 1");
	CHECK(mach_vm_reclaim_round_capacity(UINT32_MAX) == mach_vm_reclaim_round_capacity(UINT32_MAX - 1), "max");

	ring = ring_init();
	mach_vm_reclaim_ring_t again = NULL;
	CHECK_KR(mach_vm_reclaim_ring_allocate(&again, 1, 1), VM_RECLAIM_RESOURCE_SHORTAGE);
	OK(mach_vm_reclaim_ring_capacity(ring, &cap));
	CHECK_KR(mach_vm_reclaim_ring_resize(ring, cap + 1), VM_RECLAIM_INVALID_CAPACITY);
	CHECK_KR(mach_vm_reclaim_ring_resize(ring, 0), VM_RECLAIM_INVALID_CAPACITY);
	CHECK_KR(mach_vm_reclaim_ring_flush(ring, 0), VM_RECLAIM_INVALID_ARGUMENT);
	OK(mach_vm_reclaim_ring_flush(ring, 5)); /* empty ring: success */

	size_t ps = page_size();
	mach_vm_address_t a = map_filled(ps, 1);
	mach_vm_reclaim_id_t id = 5;
	bool u = true;
	CHECK_KR(mach_vm_reclaim_try_enter(ring, a, VM_RECLAIM_REGION_SIZE_MAX + 1, VM_RECLAIM_DEALLOCATE, &id, &u),
	    VM_RECLAIM_INVALID_REGION_SIZE);
	CHECK(id == VM_RECLAIM_ID_NULL && !u, "id NULL, update false");
	id = VM_RECLAIM_ID_NULL;
	CHECK_KR(mach_vm_reclaim_try_enter(ring, a, ps, 0, &id, &u), VM_RECLAIM_INVALID_ARGUMENT);
	CHECK_KR(mach_vm_reclaim_try_enter(ring, a, ps, 3, &id, &u), VM_RECLAIM_INVALID_ARGUMENT);
	CHECK_KR(mach_vm_reclaim_try_enter(ring, a, 0, VM_RECLAIM_DEALLOCATE, &id, &u), VM_RECLAIM_INVALID_ARGUMENT);
	CHECK_KR(mach_vm_reclaim_try_enter(ring, UINT64_MAX - 10, ps, VM_RECLAIM_DEALLOCATE, &id, &u),
	    VM_RECLAIM_INVALID_ARGUMENT);
	CHECK_KR(mach_vm_reclaim_try_enter(ring, a, ps, VM_RECLAIM_DEALLOCATE, NULL, &u), VM_RECLAIM_INVALID_ID);
	CHECK_KR(mach_vm_reclaim_try_enter(ring, a, ps, VM_RECLAIM_DEALLOCATE, &id, NULL), VM_RECLAIM_INVALID_ARGUMENT);
	CHECK(id == VM_RECLAIM_ID_NULL, "nothing entered");
	id = defer(ring, a, ps, VM_RECLAIM_DEALLOCATE);
	CHECK(id == 0, "the errors entered nothing: id %" PRIu64, id);

	mach_vm_reclaim_state_t s;
	CHECK_KR(mach_vm_reclaim_try_cancel(ring, VM_RECLAIM_ID_NULL, a, ps, VM_RECLAIM_DEALLOCATE, &s, &u), VM_RECLAIM_INVALID_ID);
	CHECK_KR(mach_vm_reclaim_try_cancel(ring, 0, a, ps, VM_RECLAIM_DEALLOCATE, NULL, &u), VM_RECLAIM_INVALID_ARGUMENT);
	CHECK_KR(mach_vm_reclaim_try_cancel(ring, 0, a, ps, VM_RECLAIM_DEALLOCATE, &s, NULL), VM_RECLAIM_INVALID_ARGUMENT);
	CHECK_KR(mach_vm_reclaim_try_cancel(ring, 0, a, VM_RECLAIM_REGION_SIZE_MAX + 1, VM_RECLAIM_DEALLOCATE, &s, &u),
	    VM_RECLAIM_INVALID_REGION_SIZE);
	CHECK_KR(mach_vm_reclaim_query_state(ring, 0, VM_RECLAIM_DEALLOCATE, NULL), VM_RECLAIM_INVALID_ARGUMENT);
	CHECK_KR(mach_vm_reclaim_query_state(ring, VM_RECLAIM_ID_NULL, VM_RECLAIM_DEALLOCATE, &s), VM_RECLAIM_INVALID_ID);
	CHECK_KR(mach_vm_reclaim_query_state(ring, 1, VM_RECLAIM_DEALLOCATE, &s), VM_RECLAIM_INVALID_ID);
	CHECK_KR(mach_vm_reclaim_query_state(ring, 0, 9, &s), VM_RECLAIM_INVALID_ARGUMENT);
	CHECK_KR(mach_vm_reclaim_ring_capacity(ring, NULL), VM_RECLAIM_INVALID_ARGUMENT);

	/* Bad rings: null, forged, off by a few bytes. Nothing is read through them. */
	char local[64];
	mach_vm_reclaim_ring_t bad[] = {NULL, (mach_vm_reclaim_ring_t)(void *)local,
	    (mach_vm_reclaim_ring_t)(uintptr_t)1, (mach_vm_reclaim_ring_t)((char *)ring + 16)};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		mach_vm_reclaim_ring_t r = bad[i];
		id = VM_RECLAIM_ID_NULL;
		CHECK_KR(mach_vm_reclaim_ring_capacity(r, &cap), VM_RECLAIM_INVALID_RING);
		CHECK_KR(mach_vm_reclaim_ring_resize(r, 1), VM_RECLAIM_INVALID_RING);
		CHECK_KR(mach_vm_reclaim_ring_flush(r, 1), VM_RECLAIM_INVALID_RING);
		CHECK_KR(mach_vm_reclaim_try_enter(r, a, ps, VM_RECLAIM_DEALLOCATE, &id, &u), VM_RECLAIM_INVALID_RING);
		CHECK_KR(mach_vm_reclaim_try_cancel(r, 0, a, ps, VM_RECLAIM_DEALLOCATE, &s, &u), VM_RECLAIM_INVALID_RING);
		CHECK_KR(mach_vm_reclaim_query_state(r, 0, VM_RECLAIM_DEALLOCATE, &s), VM_RECLAIM_INVALID_RING);
		CHECK_KR(mach_vm_reclaim_update_kernel_accounting(r), VM_RECLAIM_INVALID_RING);
	}
	CHECK(mach_vm_reclaim_is_reusable(VM_RECLAIM_UNRECLAIMED) && mach_vm_reclaim_is_reusable(VM_RECLAIM_FREED),
	    "reusable states");
	CHECK(!mach_vm_reclaim_is_reusable(VM_RECLAIM_DEALLOCATED) && !mach_vm_reclaim_is_reusable(VM_RECLAIM_BUSY) &&
	    !mach_vm_reclaim_is_reusable(0) && !mach_vm_reclaim_is_reusable(77), "other states");
	CHECK(cancel(ring, 0, a, ps, VM_RECLAIM_DEALLOCATE, &s) && all_bytes(a, ps, 1), "the ring still works");
}

/* xnu's resize_buffer, with this library's semantics: entries that fit stay in the ring. */
static void case_resize(void) {
	mach_vm_reclaim_ring_t ring = NULL;
	mach_vm_reclaim_count_t initial = mach_vm_reclaim_round_capacity(512), max = 4 * initial, cap;
	OK(mach_vm_reclaim_ring_allocate(&ring, initial, max));
	OK(mach_vm_reclaim_ring_capacity(ring, &cap));
	CHECK(cap == initial, "capacity as asked for");
	size_t ps = page_size();
	mach_vm_address_t *addrs = calloc(max + 1, sizeof *addrs);
	mach_vm_reclaim_id_t *ids = calloc(max + 1, sizeof *ids);
	CHECK(addrs && ids, "calloc");
	for (mach_vm_reclaim_count_t i = 0; i < initial; i++) {
		addrs[i] = map_filled(ps, 'A');
		ids[i] = defer(ring, addrs[i], ps, VM_RECLAIM_DEALLOCATE);
		CHECK(ids[i] == i, "able to defer %u", i);
	}
	mach_vm_address_t extra = map_filled(ps, 'X');
	CHECK(defer(ring, extra, ps, VM_RECLAIM_DEALLOCATE) == VM_RECLAIM_ID_NULL, "unable to over-fill");

	OK(mach_vm_reclaim_ring_resize(ring, max)); /* grow with every entry in flight */
	OK(mach_vm_reclaim_ring_capacity(ring, &cap));
	CHECK(cap == max, "capacity %u after resize", cap);
	for (mach_vm_reclaim_count_t i = 0; i < initial; i++) {
		mach_vm_reclaim_state_t s;
		OK(mach_vm_reclaim_query_state(ring, ids[i], VM_RECLAIM_DEALLOCATE, &s));
		CHECK(s == VM_RECLAIM_UNRECLAIMED, "entry %u kept by the resize", i);
	}
	/* The ring now has room for max - initial more. */
	for (mach_vm_reclaim_count_t i = initial; i < max; i++) {
		addrs[i] = map_filled(ps, 'B');
		ids[i] = defer(ring, addrs[i], ps, VM_RECLAIM_DEALLOCATE);
		CHECK(ids[i] == i, "able to defer %u after growing", i);
	}
	CHECK(defer(ring, extra, ps, VM_RECLAIM_DEALLOCATE) == VM_RECLAIM_ID_NULL, "unable to over-fill the grown ring");

	/* Shrink back: the oldest max - initial are reclaimed, the newest stay. */
	OK(mach_vm_reclaim_ring_resize(ring, initial));
	OK(mach_vm_reclaim_ring_capacity(ring, &cap));
	CHECK(cap == initial, "shrunk");
	for (mach_vm_reclaim_count_t i = 0; i < max; i++) {
		mach_vm_reclaim_state_t s;
		bool usable = cancel(ring, ids[i], addrs[i], ps, VM_RECLAIM_DEALLOCATE, &s);
		if (i < max - initial) {
			CHECK(!usable && s == VM_RECLAIM_DEALLOCATED, "entry %u drained by the shrink (state %u)", i, s);
			CHECK(resident(addrs[i], ps) == -1, "entry %u unmapped", i);
		} else {
			CHECK(usable && s == VM_RECLAIM_UNRECLAIMED, "entry %u kept (state %u)", i, s);
			CHECK(all_bytes(addrs[i], ps, 'B'), "entry %u contents kept", i);
		}
	}
	free(addrs);
	free(ids);
}

/* xnu's inherit_buffer_after_fork: the child inherits the ring and its entries. */
static void case_fork(void) {
	mach_vm_reclaim_ring_t ring = ring_init();
	size_t size = 16 << 10;
	mach_vm_address_t a = map_filled(size, 119);
	CHECK(defer(ring, a, size, VM_RECLAIM_DEALLOCATE) == 0, "entry placed at start");
	pid_t pid = fork();
	CHECK(pid >= 0, "fork");
	if (pid == 0) {
		mach_vm_reclaim_ring_t tmp;
		CHECK_KR(mach_vm_reclaim_ring_allocate(&tmp, 1, 1), VM_RECLAIM_RESOURCE_SHORTAGE);
		mach_vm_reclaim_state_t s;
		CHECK(cancel(ring, 0, a, size, VM_RECLAIM_DEALLOCATE, &s), "entry can be reused after fork()");
		CHECK(*(unsigned char *)(uintptr_t)a == 119 && all_bytes(a, size, 119), "value is preserved");
		mach_vm_reclaim_id_t id = defer(ring, a, size, VM_RECLAIM_DEALLOCATE);
		CHECK(id == 1, "new entry is placed at tail: %" PRIu64, id);
		OK(mach_vm_reclaim_ring_flush(ring, 10));
		OK(mach_vm_reclaim_query_state(ring, 1, VM_RECLAIM_DEALLOCATE, &s));
		CHECK(s == VM_RECLAIM_DEALLOCATED && resident(a, size) == -1, "the child's flush unmapped its copy");
		exit(0);
	}
	int status;
	CHECK(waitpid(pid, &status, 0) == pid, "waitpid");
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child passed (status %d)", status);
	mach_vm_reclaim_state_t s;
	CHECK(cancel(ring, 0, a, size, VM_RECLAIM_DEALLOCATE, &s) && s == VM_RECLAIM_UNRECLAIMED,
	    "the parent's entry is its own");
	CHECK(all_bytes(a, size, 119), "the parent's region is intact");
}

/* The reclaimer thread is the kernel side: with no call from us, idle memory in the ring is trimmed
 * (run with VMSPACE_RECLAIM_PERIOD_MS small and VMSPACE_RECLAIM_MIN_TRIM=4096). */
static void case_background(void) {
	mach_vm_reclaim_ring_t ring = ring_init();
	mach_vm_address_t a = map_filled(MiB(32), 3);
	mach_vm_reclaim_id_t id = defer(ring, a, MiB(32), VM_RECLAIM_DEALLOCATE);
	mach_vm_reclaim_state_t s = 0;
	for (int i = 0; i < 1000; i++) { /* at most 10 s */
		OK(mach_vm_reclaim_query_state(ring, id, VM_RECLAIM_DEALLOCATE, &s));
		if (s == VM_RECLAIM_DEALLOCATED) break;
		struct timespec ts = {0, 10 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	CHECK(s == VM_RECLAIM_DEALLOCATED, "the reclaimer thread trimmed the idle entry (state %u)", s);
	CHECK(resident(a, MiB(32)) == -1, "and unmapped it");
}

int main(int argc, char **argv) {
	static const struct { const char *name; void (*run)(void); } cases[] = {
		{"init", case_init}, {"single_entry", case_single_entry}, {"reuse_dealloc", case_reuse_dealloc},
		{"reuse_free", case_reuse_free}, {"cancel_keeps", case_cancel_keeps}, {"reuse_id", case_reuse_id},
		{"full", case_full}, {"errors", case_errors}, {"resize", case_resize}, {"fork", case_fork},
		{"background", case_background},
	};
	CHECK(argc == 2, "usage: ring CASE");
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		if (strcmp(argv[1], cases[i].name) == 0) {
			cases[i].run();
			printf("ok %s\n", argv[1]);
			return 0;
		}
	}
	CHECK(0, "no case %s", argv[1]);
	return 2;
}
