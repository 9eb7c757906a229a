/*
 * vm_reclaim.h — the deferred reclamation ring of xnu's <mach/vm_reclaim.h> (xnu-12377), on Linux,
 * implemented by libvmspace (crates/vmspace-c of the vmspace project).
 *
 * Self-contained for C11 (and C++): it defines the Mach types and error macros it needs unless an
 * earlier header did. Same names, types, values and semantics as the seed header; the differences
 * (misuse returns an error instead of trapping, resize keeps the entries that fit) are listed in
 * the project README. Link with `$(pkg-config --cflags --libs vmspace)`.
 */
#ifndef _VM_RECLAIM_H_
#define _VM_RECLAIM_H_

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- the Mach vocabulary the seed takes from <mach/error.h> and <mach/mach_types.h> ---- */
#ifndef _MACH_ERROR_H_
typedef int kern_return_t;
typedef kern_return_t mach_error_t;
#define ERR_SUCCESS    0
#define KERN_SUCCESS   0
#define err_system(x)  ((signed)((((unsigned)(x)) & 0x3f) << 26))
#define err_sub(x)     (((x) & 0xfff) << 14)
#define err_vm         err_system(0x8)
#endif
#ifndef _MACH_VM_TYPES_H_
typedef uint64_t mach_vm_address_t;
typedef uint64_t mach_vm_size_t;
#endif

/* How the reclaimer gives an entry's region back. */
typedef uint8_t mach_vm_reclaim_action_t;
enum {
	VM_RECLAIM_FREE       = 1, /* discard contents, keep the mapping (MADV_FREE) */
	VM_RECLAIM_DEALLOCATE = 2, /* remove the mapping (munmap) */
};

/* The state of a region entered into the ring. */
typedef uint32_t mach_vm_reclaim_state_t;
enum {
	VM_RECLAIM_UNRECLAIMED = 1,
	VM_RECLAIM_FREED       = 2,
	VM_RECLAIM_DEALLOCATED = 3,
	VM_RECLAIM_BUSY        = 4,
};

#define err_vm_reclaim(e) (err_vm | err_sub(1) | (e))

typedef mach_error_t mach_vm_reclaim_error_t;
enum {
	VM_RECLAIM_SUCCESS             = ERR_SUCCESS,
	VM_RECLAIM_INVALID_ARGUMENT    = err_vm_reclaim(1), /* 0x20004001 */
	VM_RECLAIM_NOT_SUPPORTED       = err_vm_reclaim(2),
	VM_RECLAIM_INVALID_REGION_SIZE = err_vm_reclaim(3),
	VM_RECLAIM_INVALID_CAPACITY    = err_vm_reclaim(4),
	VM_RECLAIM_INVALID_ID          = err_vm_reclaim(5),
	VM_RECLAIM_RESOURCE_SHORTAGE   = err_vm_reclaim(6),
	VM_RECLAIM_INVALID_RING        = err_vm_reclaim(7), /* 0x20004007 */
};

/* The handle of the ring (opaque: its memory is the library's business). */
typedef struct mach_vm_reclaim_ring_s *mach_vm_reclaim_ring_t;
/* A number of entries. */
typedef uint32_t mach_vm_reclaim_count_t;
/* An entry's id (monotonic; slot = id % capacity). */
typedef uint64_t mach_vm_reclaim_id_t;

/* "No id": a region not (or no longer) in the ring. */
#define VM_RECLAIM_ID_NULL UINT64_MAX
/* The largest region one entry describes. */
#define VM_RECLAIM_REGION_SIZE_MAX ((mach_vm_size_t)UINT32_MAX)

/* The process's one ring (a second: VM_RECLAIM_RESOURCE_SHORTAGE), served by a reclaimer thread.
 * NULL ring, zero capacities or initial > max: VM_RECLAIM_INVALID_ARGUMENT; max beyond the
 * library's maximum: VM_RECLAIM_INVALID_CAPACITY. */
mach_vm_reclaim_error_t mach_vm_reclaim_ring_allocate(
	mach_vm_reclaim_ring_t *ring,
	mach_vm_reclaim_count_t initial_capacity,
	mach_vm_reclaim_count_t max_capacity);

/* New capacity in 1..max_capacity (else VM_RECLAIM_INVALID_CAPACITY). Not thread-safe with
 * try_enter / try_cancel: callers serialise. */
mach_vm_reclaim_error_t mach_vm_reclaim_ring_resize(
	mach_vm_reclaim_ring_t ring,
	mach_vm_reclaim_count_t capacity);

/* The entries the ring holds now. */
mach_vm_reclaim_error_t mach_vm_reclaim_ring_capacity(
	mach_vm_reclaim_ring_t ring,
	mach_vm_reclaim_count_t *capacity);

/* The most entries that fit the whole pages `capacity` entries need (at most the maximum). */
mach_vm_reclaim_count_t mach_vm_reclaim_round_capacity(
	mach_vm_reclaim_count_t capacity);

/* Reclaim the num_entries_to_reclaim oldest entries now (0: VM_RECLAIM_INVALID_ARGUMENT).
 * Thread-safe with every call. */
mach_vm_reclaim_error_t mach_vm_reclaim_ring_flush(
	mach_vm_reclaim_ring_t ring,
	mach_vm_reclaim_count_t num_entries_to_reclaim);

/* Hand [region_start, region_start + region_size) to the reclaimer. *id in: VM_RECLAIM_ID_NULL for
 * a new id, or a cancelled id to reuse its slot; out: the id, or VM_RECLAIM_ID_NULL if the region was
 * not entered (ring full, reuse slot already passed). Not thread-safe with itself, try_cancel and
 * resize: callers serialise. */
mach_vm_reclaim_error_t mach_vm_reclaim_try_enter(
	mach_vm_reclaim_ring_t ring,
	mach_vm_address_t region_start,
	mach_vm_size_t region_size,
	mach_vm_reclaim_action_t action,
	mach_vm_reclaim_id_t *id,
	bool *should_update_kernel_accounting);

/* Take an entry back; reuse the region only if mach_vm_reclaim_is_reusable(*state). Misuse (an id
 * never entered, a double cancel, another region) is an error, never a trap. Not thread-safe with
 * try_enter and resize. */
mach_vm_reclaim_error_t mach_vm_reclaim_try_cancel(
	mach_vm_reclaim_ring_t ring,
	mach_vm_reclaim_id_t id,
	mach_vm_address_t region_start,
	mach_vm_size_t region_size,
	mach_vm_reclaim_action_t action,
	mach_vm_reclaim_state_t *state,
	bool *should_update_kernel_accounting);

/* The state of an id now (racy by nature). Thread-safe. */
mach_vm_reclaim_error_t mach_vm_reclaim_query_state(
	mach_vm_reclaim_ring_t ring,
	mach_vm_reclaim_id_t id,
	mach_vm_reclaim_action_t action,
	mach_vm_reclaim_state_t *state);

/* True exactly for VM_RECLAIM_UNRECLAIMED and VM_RECLAIM_FREED. */
bool mach_vm_reclaim_is_reusable(
	mach_vm_reclaim_state_t state);

/* Report the ring's bytes; may reclaim on this thread (hold no locks of your own). Thread-safe. */
mach_vm_reclaim_error_t mach_vm_reclaim_update_kernel_accounting(
	mach_vm_reclaim_ring_t ring);

#ifdef __cplusplus
}
#endif

#endif /* _VM_RECLAIM_H_ */
