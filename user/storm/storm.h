/* storm.h: a storm's options and the state its parts share.  The client
 * threads, the flood and the report all read the run; only run.c sets it
 * up and tears it down. */
#ifndef IMDS_STORM_STORM_H
#define IMDS_STORM_STORM_H
#include <llhttp.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "compile/vmconf.h"

#define STORM_MAX_PIDS 16 /* --server-pid: a master and its workers (nginx) */
#define STORM_FLOOD_PPS 10240 /* ten times the default packet budget */

enum storm_mode { STORM_CONN, STORM_KEEPALIVE, STORM_STEADY };

struct storm_opts {
	const char *vms_file;
	size_t count; /* 0: every VM of the file */
	const char *netns_prefix;
	const char *suffix;
	enum storm_mode mode;
	unsigned threads;
	size_t conns; /* steady: connections, 0 = one per VM */
	double duration_s;
	struct in_addr address;
	unsigned port;
	const char *api_version;
	int token;
	unsigned retries;
	unsigned timeout_ms;
	long server_pid; /* the first of server_pids */
	long server_pids[STORM_MAX_PIDS];
	unsigned npids;
	int json;
	int quiet;
	int trace;
	const char *save_dir;
	const char *status_only_dir; /* --status-only: listings from a --save tree, statuses checked only */
	const char *plot;
	const char *pin_dir;
	size_t flood_vm; /* 0: no flood */
	unsigned flood_pps;
};

struct storm_vm;
struct storm_client;
struct storm_thread;
struct storm_flood;

struct storm_run {
	struct storm_opts o;
	struct storm_flood *flood;
	struct vm_set set;
	struct storm_vm *vms;
	size_t nvms;
	struct storm_client *clients;
	size_t nclients;
	struct storm_thread *threads;
	llhttp_settings_t settings;
	pthread_barrier_t start;
	struct sockaddr_in sa; /* the metadata address, what every connect gets */
	uint64_t t0, stop_at; /* stop_at: steady mode's end */
	uint64_t threads_done;
	uint64_t wrong_shown;
	uint64_t save_errors;
};

#endif
