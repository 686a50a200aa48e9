/* client.h: the storm's clients.  Each worker thread drives its share of
 * the clients through one io_uring; a client crawls one VM from inside
 * that VM's network namespace. */
#ifndef IMDS_STORM_CLIENT_H
#define IMDS_STORM_CLIENT_H
#include <liburing.h>
#include <llhttp.h>
#include <pthread.h>
#include <stdint.h>

#include "lib/outbuf.h"
#include "storm/check.h"
#include "storm/crawl.h"
#include "storm/stats.h"
#include "storm/storm.h"

#define STORM_TOKEN_MAX 256

/* CS_RECEIVING: the request is submitted with the recv for its answer */
enum storm_state { CS_IDLE, CS_CONNECTING, CS_RECEIVING, CS_RETRY_WAIT, CS_DONE };

struct storm_client {
	struct storm_thread *th;
	struct storm_vm *vm;
	int fd;
	enum storm_state state;
	int reused; /* fd already carried a response: a close may be the server's idle close */
	uint32_t slot; /* index in its thread: names it in an io_uring operation */
	uint32_t gen;  /* attempt number: completions of an earlier attempt are stale */
	unsigned inflight; /* operations submitted and not yet completed, any attempt */
	char *rbuf;    /* a pending recv's buffer */
	struct storm_crawl crawl;
	char token[STORM_TOKEN_MAX];
	char auth[STORM_TOKEN_MAX + 40]; /* the token header and the blank line */
	size_t auth_len;
	llhttp_t parser;
	struct outbuf body;
	struct outbuf out;
	size_t out_off;
	int complete, keep, status;
	size_t resp_bytes;
	uint64_t t_start, deadline, retry_at;
	unsigned attempts;
};

struct storm_thread {
	pthread_t tid;
	struct storm_run *run;
	struct io_uring ring;
	int ring_ok;
	void **dead; /* buffers a stale operation may still use, freed at the end */
	size_t ndead, dead_cap;
	int cur_nsfd; /* the namespace this thread is in, -1: the original */
	struct storm_client **clients;
	size_t n, active;
	struct storm_stats st;
	struct storm_hist hist;
};

/* The parser callbacks every client's llhttp parser uses. */
void storm_client_settings(llhttp_settings_t *settings);

/* A worker thread (pthread_create's start routine, arg a storm_thread):
 * waits at the run's start barrier, then crawls until its clients are
 * done; exits the process when its ring cannot be made. */
void *storm_thread_main(void *arg);

/* What a client holds, sockets included (not the thread's ring). */
void storm_client_free(struct storm_client *c);

/* The thread's ring, if still open, and the buffers it set aside. */
void storm_thread_free(struct storm_thread *th);

#endif
