/* Prints the header's values (compiled -std=c11 -pedantic -Werror: the header is self-contained). */
#include "vm_reclaim.h"
#include <stdio.h>

int main(void) {
	_Static_assert(sizeof(mach_vm_reclaim_action_t) == 1, "action is uint8_t");
	_Static_assert(sizeof(mach_vm_reclaim_state_t) == 4, "state is uint32_t");
	_Static_assert(sizeof(mach_vm_reclaim_error_t) == 4, "error is mach_error_t");
	_Static_assert(sizeof(mach_vm_reclaim_id_t) == 8 && sizeof(mach_vm_address_t) == 8, "64-bit ids");
	printf("%d %d %d %d %d %d %d %d\n", VM_RECLAIM_SUCCESS, VM_RECLAIM_INVALID_ARGUMENT, VM_RECLAIM_NOT_SUPPORTED,
	    VM_RECLAIM_INVALID_REGION_SIZE, VM_RECLAIM_INVALID_CAPACITY, VM_RECLAIM_INVALID_ID,
	    VM_RECLAIM_RESOURCE_SHORTAGE, VM_RECLAIM_INVALID_RING);
	printf("%d %d %d %d %d %d\n", VM_RECLAIM_FREE, VM_RECLAIM_DEALLOCATE, VM_RECLAIM_UNRECLAIMED, VM_RECLAIM_FREED,
	    VM_RECLAIM_DEALLOCATED, VM_RECLAIM_BUSY);
	printf("%llu %llu\n", (unsigned long long)VM_RECLAIM_ID_NULL, (unsigned long long)VM_RECLAIM_REGION_SIZE_MAX);
	return 0;
}
