/* flood.c: the flood's raw socket and its paced sending thread. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/ip.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "storm/flood.h"
#include "storm/stats.h"

#define STORM_FLOOD_TICK_NS 200000ull

static uint16_t storm_csum_fold(uint32_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

/* A SYN from the VM's own address and a fresh source port: what the data
 * plane verifies and then charges to the VM's packet budget. */
static void storm_flood_syn(const struct storm_flood *f, struct tcphdr *t, uint32_t n)
{
	uint32_t sum = 0;
	const uint16_t *w = (const uint16_t *)t;

	memset(t, 0, sizeof(*t));
	t->source = htons((uint16_t)(10000 + n % 50000));
	t->dest = htons((uint16_t)f->port);
	t->seq = htonl(n * 2654435761u);
	t->doff = sizeof(*t) / 4;
	t->syn = 1;
	t->window = htons(64240);
	/* pseudo-header: source, destination, protocol, TCP length */
	sum += (f->vm.d->ipv4 & 0xffff) + (f->vm.d->ipv4 >> 16);
	sum += (f->dst.s_addr & 0xffff) + (f->dst.s_addr >> 16);
	sum += htons(IPPROTO_TCP) + htons((uint16_t)sizeof(*t));
	for (size_t i = 0; i < sizeof(*t) / 2; i++)
		sum += w[i];
	t->check = storm_csum_fold(sum);
}

static void *storm_flood_main(void *arg)
{
	struct storm_flood *f = arg;
	struct sockaddr_in dst = { .sin_family = AF_INET, .sin_addr = f->dst };
	struct timespec tick = { 0, (long)STORM_FLOOD_TICK_NS };
	struct tcphdr syn;

	pthread_barrier_wait(f->start);
	f->t0 = storm_now();
	while (!__atomic_load_n(&f->stop, __ATOMIC_RELAXED)) {
		uint64_t due = (uint64_t)((double)(storm_now() - f->t0) * f->pps / 1e9);

		while (f->sent + f->send_errors < due) {
			storm_flood_syn(f, &syn, (uint32_t)(f->sent + f->send_errors));
			if (sendto(f->fd, &syn, sizeof(syn), 0, (struct sockaddr *)&dst, sizeof(dst)) < 0)
				f->send_errors++;
			else
				f->sent++;
		}
		nanosleep(&tick, NULL);
	}
	f->t1 = storm_now();
	return NULL;
}

/* The raw socket is made in the flooding VM's namespace by the main thread,
 * which then returns to its own namespace. */
int storm_flood_open(const struct storm_opts *o, const struct vm_set *set, struct storm_flood **out)
{
	struct storm_flood *f;
	char path[512];
	int self, err = 0;

	if (o->flood_vm > set->n) {
		fprintf(stderr, "imds-storm: --flood-vm %zu: %s has %zu VMs\n", o->flood_vm, o->vms_file, set->n);
		return -EINVAL;
	}
	f = *out = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	f->fd = -1;
	f->dst = o->address;
	f->port = o->port;
	f->pps = o->flood_pps;
	storm_vm_init(&f->vm, &set->vms[o->flood_vm - 1], (unsigned)o->flood_vm);
	snprintf(path, sizeof(path), "/run/netns/%s%zu%s%s", o->netns_prefix, o->flood_vm, *o->suffix ? "-" : "",
		 o->suffix);
	f->vm.nsfd = open(path, O_RDONLY | O_CLOEXEC);
	self = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	if (f->vm.nsfd < 0 || self < 0 || setns(f->vm.nsfd, CLONE_NEWNET)) {
		err = errno;
		fprintf(stderr, "imds-storm: --flood-vm: %s: %s\n", path, strerror(err));
	} else {
		f->fd = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_TCP);
		err = f->fd < 0 ? errno : 0;
		if (err)
			fprintf(stderr, "imds-storm: --flood-vm: raw socket in %s: %s\n", path, strerror(err));
		if (setns(self, CLONE_NEWNET)) {
			err = errno;
			fprintf(stderr, "imds-storm: cannot return to the original namespace: %s\n", strerror(err));
		}
	}
	if (self >= 0)
		close(self);
	return -err;
}

int storm_flood_start(struct storm_flood *f, pthread_barrier_t *start)
{
	f->start = start;
	return -pthread_create(&f->tid, NULL, storm_flood_main, f);
}

void storm_flood_stop(struct storm_flood *f)
{
	__atomic_store_n(&f->stop, 1, __ATOMIC_RELAXED);
	pthread_join(f->tid, NULL);
}

void storm_flood_close(struct storm_flood *f)
{
	if (!f)
		return;
	if (f->fd >= 0)
		close(f->fd);
	if (f->vm.nsfd >= 0)
		close(f->vm.nsfd);
	free(f);
}

double storm_flood_seconds(const struct storm_flood *f)
{
	return f->t1 > f->t0 ? (double)(f->t1 - f->t0) / 1e9 : 0.0;
}

double storm_flood_rate(const struct storm_flood *f)
{
	return storm_flood_seconds(f) > 0 ? (double)f->sent / storm_flood_seconds(f) : 0.0;
}
