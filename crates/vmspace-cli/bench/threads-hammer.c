/* Four threads, each 25,000 x (mmap of 8-32 KiB, a write, mprotect of its first page, munmap): many
 * memory calls running at once, for measuring how often `vmspace replay --exact` finds the kernel's
 * order of overlapping calls.
 *   gcc -O1 -pthread -o threads-hammer threads-hammer.c
 *   setarch -R vmspace record -o hammer.rec -- ./threads-hammer
 *   vmspace replay --exact --json hammer.rec
 */
#include <pthread.h>
#include <sys/mman.h>

static void *work(void *a) {
    for (int i = 0; i < 25000; i++) {
        size_t len = 8192 * (1 + i % 4);
        char *p = mmap(0, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) return a;
        p[0] = 1;
        mprotect(p, 4096, PROT_READ);
        munmap(p, len);
    }
    return a;
}

int main(void) {
    pthread_t t[4];
    for (int i = 0; i < 4; i++) pthread_create(&t[i], 0, work, 0);
    for (int i = 0; i < 4; i++) pthread_join(t[i], 0);
    return 0;
}
