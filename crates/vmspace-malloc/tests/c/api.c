/* Every interposed function, across the threshold both ways, under LD_PRELOAD=libvmspace_malloc.so.
 * Prints the final checksum; exits 1 on a failed check. */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #c); exit(1); } } while (0)
#define K 1024
#define M (1024 * 1024)

static void fill(void *p, size_t n, unsigned char v) { memset(p, v, n); }
static int is(const void *p, size_t n, unsigned char v) {
	const unsigned char *c = p;
	for (size_t i = 0; i < n; i++) if (c[i] != v) return 0;
	return 1;
}

int main(void) {
	size_t ps = (size_t)sysconf(_SC_PAGESIZE);
	/* malloc / free, small and large. */
	char *s = malloc(100), *l = malloc(4 * M);
	CHECK(s && l && ((uintptr_t)l % 16) == 0);
	fill(s, 100, 1); fill(l, 4 * M, 2);
	CHECK(malloc_usable_size(l) >= 4 * M && malloc_usable_size(s) >= 100 && malloc_usable_size(NULL) == 0);
	free(s); free(l); free(NULL);
	/* The same large size again: reused from the cache, still a working block. */
	l = malloc(4 * M); CHECK(l); fill(l, 4 * M, 3); CHECK(is(l, 4 * M, 3)); free(l);
	/* calloc zeroes, also a reused block; an overflowing product fails. */
	l = malloc(1 * M); fill(l, M, 0xff); free(l);
	char *z = calloc(1, M); CHECK(z && is(z, M, 0)); free(z);
	z = calloc(3, 200 * K); CHECK(z && is(z, 600 * K, 0)); free(z);
	volatile size_t huge = SIZE_MAX / 2; errno = 0; CHECK(calloc(huge, 4) == NULL && errno == ENOMEM);
	/* realloc: small -> large -> larger -> small, contents kept each way. */
	char *r = malloc(1000); fill(r, 1000, 7);
	r = realloc(r, 300 * K); CHECK(r && is(r, 1000, 7)); fill(r, 300 * K, 8);
	r = realloc(r, 3 * M); CHECK(r && is(r, 300 * K, 8)); fill(r, 3 * M, 9);
	r = realloc(r, 2 * M); CHECK(r && is(r, 2 * M, 9));
	r = realloc(r, 500); CHECK(r && is(r, 500, 9));
	CHECK(realloc(r, 0) == NULL); /* frees, as glibc */
	r = realloc(NULL, 200 * K); CHECK(r); free(r);
	/* The memalign family. */
	void *p = NULL;
	CHECK(posix_memalign(&p, 64, 100) == 0 && ((uintptr_t)p % 64) == 0); free(p);
	CHECK(posix_memalign(&p, 1 << 16, M) == 0 && ((uintptr_t)p % (1 << 16)) == 0); fill(p, M, 1); free(p);
	CHECK(posix_memalign(&p, 2 * M, 5 * M) == 0 && ((uintptr_t)p % (2 * M)) == 0); fill(p, 5 * M, 1); free(p);
	CHECK(posix_memalign(&p, 3, 100) == EINVAL && posix_memalign(&p, 4, 100) == EINVAL);
	p = aligned_alloc(4096, 256 * K); CHECK(p && ((uintptr_t)p % 4096) == 0); free(p);
	volatile size_t three = 3; /* glibc before 2.38 rounds up; the preload says EINVAL, as C17 and glibc 2.38 */
	if (getenv("LD_PRELOAD")) { errno = 0; CHECK(aligned_alloc(three, 64) == NULL && errno == EINVAL); }
	p = memalign(128, 400 * K); CHECK(p && ((uintptr_t)p % 128) == 0); free(p);
	p = memalign(100, 10); CHECK(p && ((uintptr_t)p % 128) == 0); free(p);
	p = valloc(10); CHECK(p && ((uintptr_t)p % ps) == 0); free(p);
	p = valloc(M); CHECK(p && ((uintptr_t)p % ps) == 0); free(p);
	p = pvalloc(1); CHECK(p && ((uintptr_t)p % ps) == 0 && malloc_usable_size(p) >= ps); free(p);
	p = pvalloc(200 * K + 1); CHECK(p && malloc_usable_size(p) >= 200 * K + ps); free(p);
	/* A churn of large blocks of many sizes. */
	unsigned long sum = 0;
	void *keep[32] = {0};
	for (int i = 0; i < 2000; i++) {
		int k = (i * 7) % 32;
		free(keep[k]);
		size_t n = 128 * K + (size_t)((i * 7919) % (2 * M));
		keep[k] = (i % 3) ? malloc(n) : calloc(1, n);
		CHECK(keep[k]);
		((unsigned char *)keep[k])[n - 1] = (unsigned char)i;
		sum += ((unsigned char *)keep[k])[n - 1];
	}
	for (int k = 0; k < 32; k++) free(keep[k]);
	printf("api ok %lu\n", sum);
	return 0;
}
