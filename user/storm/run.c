/* run.c: setting a storm up, running it and tearing it down.  The worker
 * threads (client.c) and the flood start together at a barrier; the main
 * thread prints progress once a second until they are done. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "storm/client.h"
#include "storm/flood.h"
#include "storm/proc.h"
#include "storm/run.h"

void storm_raise_nofile(void)
{
	struct rlimit rl;

	if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

int storm_open_vms(struct storm_run *run)
{
	const struct storm_opts *o = &run->o;
	char path[512];

	run->nvms = o->count && o->count < run->set.n ? o->count : run->set.n;
	run->vms = calloc(run->nvms ? run->nvms : 1, sizeof(*run->vms));
	if (!run->vms)
		return -ENOMEM;
	for (size_t i = 0; i < run->nvms; i++)
		run->vms[i].nsfd = -1;
	for (size_t i = 0; i < run->nvms; i++) {
		struct storm_vm *vm = &run->vms[i];

		storm_vm_init(vm, &run->set.vms[i], (unsigned)i + 1);
		snprintf(path, sizeof(path), "/run/netns/%s%u%s%s", o->netns_prefix, vm->index, *o->suffix ? "-" : "",
			 o->suffix);
		vm->nsfd = open(path, O_RDONLY | O_CLOEXEC);
		if (vm->nsfd < 0) {
			int err = errno;

			fprintf(stderr, "imds-storm: %s (vm %s): %s\n", path, vm->d->json_path, strerror(err));
			return -err;
		}
	}
	return 0;
}

static int storm_make_threads(struct storm_run *run)
{
	const struct storm_opts *o = &run->o;

	run->threads = calloc(o->threads, sizeof(*run->threads));
	if (!run->threads)
		return -ENOMEM;
	for (unsigned t = 0; t < o->threads; t++) {
		struct storm_thread *th = &run->threads[t];

		th->run = run;
		th->cur_nsfd = -1;
		th->clients = calloc(run->nclients / o->threads + 1, sizeof(*th->clients));
		if (!th->clients)
			return -ENOMEM;
	}
	return 0;
}

int storm_make_clients(struct storm_run *run)
{
	const struct storm_opts *o = &run->o;

	storm_client_settings(&run->settings);
	run->sa = (struct sockaddr_in){ .sin_family = AF_INET, .sin_port = htons((uint16_t)o->port),
				       .sin_addr = o->address };
	run->nclients = o->mode == STORM_STEADY && o->conns ? o->conns : run->nvms;
	run->clients = calloc(run->nclients, sizeof(*run->clients));
	if (!run->clients || storm_make_threads(run))
		return -ENOMEM;
	for (size_t i = 0; i < run->nclients; i++) {
		struct storm_client *c = &run->clients[i];
		struct storm_thread *th = &run->threads[i % o->threads];

		c->th = th;
		c->vm = &run->vms[i % run->nvms];
		c->fd = -1;
		c->crawl.o = o;
		c->crawl.ipv4 = c->vm->ipv4;
		c->slot = (uint32_t)th->n;
		th->clients[th->n++] = c;
		th->active++;
		if (storm_crawl_init(&c->crawl, o->token))
			return -ENOMEM;
	}
	return 0;
}

/* The threads' counters and, when h is given, their histograms. */
static void storm_sum(const struct storm_run *run, struct storm_stats *s, struct storm_hist *h)
{
	memset(s, 0, sizeof(*s));
	for (unsigned t = 0; t < run->o.threads; t++) {
		storm_stats_add(s, &run->threads[t].st);
		if (h)
			storm_hist_merge(h, &run->threads[t].hist);
	}
}

/* Every worker and the flood, waiting at the start barrier; a failure
 * exits, since threads already waiting cannot be released cleanly. */
static void storm_start_threads(struct storm_run *run)
{
	int rc = 0;

	for (unsigned t = 0; !rc && t < run->o.threads; t++)
		rc = -pthread_create(&run->threads[t].tid, NULL, storm_thread_main, &run->threads[t]);
	if (!rc && run->flood)
		rc = storm_flood_start(run->flood, &run->start);
	if (rc) {
		fprintf(stderr, "imds-storm: cannot start threads: %s\n", strerror(-rc));
		exit(1);
	}
}

/* Until every worker is done: a progress line once a second. */
static void storm_wait(struct storm_run *run)
{
	uint64_t last = 0, printed_s = 0;
	struct storm_stats s;

	while (__atomic_load_n(&run->threads_done, __ATOMIC_ACQUIRE) < run->o.threads) {
		uint64_t elapsed_s;

		usleep(20000);
		elapsed_s = (storm_now() - run->t0) / 1000000000ull;
		if (!run->o.quiet && elapsed_s > printed_s) {
			printed_s = elapsed_s;
			storm_sum(run, &s, NULL);
			storm_report_progress(run, &s, &last);
		}
	}
	for (unsigned t = 0; t < run->o.threads; t++)
		pthread_join(run->threads[t].tid, NULL);
	if (run->flood)
		storm_flood_stop(run->flood);
}

/* Starts every thread at once (a barrier), waits, and collects the result. */
int storm_execute(struct storm_run *run, struct storm_result *r)
{
	const long *pids = run->o.server_pids;
	unsigned npids = run->o.npids;
	/* one source for both readings: schedstat (ns) where readable, else ticks */
	double (*cpu)(long) = storm_cpu_schedstat(run->o.server_pid) >= 0 ? storm_cpu_schedstat : storm_cpu_ticks;
	double cpu0 = run->o.server_pid ? storm_cpu_sum(pids, npids, cpu) : -1, cpu1;
	double self0 = storm_self_cpu();

	if (pthread_barrier_init(&run->start, NULL, run->o.threads + 1 + !!run->flood))
		return -ENOMEM;
	storm_start_threads(run);
	run->t0 = storm_now();
	run->stop_at = run->t0 + (uint64_t)(run->o.duration_s * 1e9);
	pthread_barrier_wait(&run->start);
	storm_wait(run);
	memset(r, 0, sizeof(*r));
	storm_sum(run, &r->s, &r->h);
	r->seconds = (double)((r->s.last_done_ns > run->t0 ? r->s.last_done_ns : storm_now()) - run->t0) / 1e9;
	cpu1 = cpu0 >= 0 ? storm_cpu_sum(pids, npids, cpu) : -1;
	r->cpu_s = cpu1 >= 0 ? cpu1 - cpu0 : -1;
	r->client_cpu_s = storm_self_cpu() - self0;
	storm_read_memory(pids, npids, run->o.pin_dir, &r->mem);
	pthread_barrier_destroy(&run->start);
	return 0;
}

void storm_free(struct storm_run *run)
{
	for (size_t i = 0; run->clients && i < run->nclients; i++)
		storm_client_free(&run->clients[i]);
	free(run->clients);
	for (unsigned t = 0; run->threads && t < run->o.threads; t++)
		storm_thread_free(&run->threads[t]);
	free(run->threads);
	for (size_t i = 0; run->vms && i < run->nvms; i++)
		if (run->vms[i].nsfd >= 0)
			close(run->vms[i].nsfd);
	free(run->vms);
	storm_flood_close(run->flood);
	run->flood = NULL;
	vmconf_free(&run->set);
}
