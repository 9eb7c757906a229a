/* Fork and threads under the preload: threads churn large and small blocks while the main thread
 * forks; each child allocates and frees large blocks itself (the allocator's locks were held across
 * the fork, so none is inherited held) and exits 0. Prints a summary; exits 1 on a failed check. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #c); _exit(1); } } while (0)
#define THREADS 4
#define FORKS 8

static volatile int stop;

static void churn(unsigned seed, int rounds) {
	void *held[16] = {0};
	size_t len[16] = {0};
	for (int i = 0; i < rounds; i++) {
		seed = seed * 1103515245u + 12345u;
		int k = (int)((seed >> 8) % 16);
		if (held[k]) {
			unsigned char *c = held[k];
			CHECK(c[0] == (unsigned char)k && c[len[k] - 1] == (unsigned char)k);
			free(held[k]);
		}
		len[k] = (seed >> 12) % 4 == 0 ? 64 + (seed >> 20) % 4096 : (128 << 10) + (seed >> 10) % (1 << 20);
		held[k] = (seed & 1) ? malloc(len[k]) : calloc(1, len[k]);
		CHECK(held[k]);
		memset(held[k], k, len[k] < 8192 ? len[k] : 8192);
		((unsigned char *)held[k])[len[k] - 1] = (unsigned char)k;
		if (i % 50 == 0) {
			len[k] *= 2;
			held[k] = realloc(held[k], len[k]);
			CHECK(held[k]);
			((unsigned char *)held[k])[len[k] - 1] = (unsigned char)k;
		}
	}
	for (int k = 0; k < 16; k++) free(held[k]);
}

static void *worker(void *arg) {
	unsigned seed = (unsigned)(uintptr_t)arg;
	while (!stop) churn(seed++, 200);
	return NULL;
}

int main(void) {
	pthread_t t[THREADS];
	for (int i = 0; i < THREADS; i++) CHECK(pthread_create(&t[i], NULL, worker, (void *)(uintptr_t)(i + 1)) == 0);
	int ok = 0;
	for (int f = 0; f < FORKS; f++) {
		pid_t pid = fork();
		CHECK(pid >= 0);
		if (pid == 0) {
			churn(1000 + (unsigned)f, 300); /* would hang on a lock inherited held */
			_exit(0);
		}
		int st;
		CHECK(waitpid(pid, &st, 0) == pid);
		CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
		ok++;
	}
	stop = 1;
	for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
	printf("stress ok forks=%d\n", ok);
	return 0;
}
