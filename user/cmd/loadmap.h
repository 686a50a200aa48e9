/* loadmap.h: what imds-loadmap's command files share: the context every
 * command runs with and the store's opening under its lock.  The commands
 * are in imds-loadmap.c, loadmap_show.c (list, show, stats) and
 * loadmap_sync.c (sync). */
#ifndef IMDS_CMD_LOADMAP_H
#define IMDS_CMD_LOADMAP_H
#include <signal.h>
#include <stdbool.h>

#include "store/store.h"

struct identity_key;

enum { LOADMAP_OK = 0, LOADMAP_FAIL = 1, LOADMAP_USAGE = 2 };

#define LOADMAP_ERRLEN 1024

struct loadmap_ctx {
	const char *pin_dir;
	const char *key_dir;
	struct store store;
	struct identity_key *identity; /* signs the trees `load` writes */
	struct store_size size;	       /* --max-vms, --arena-size: a new store's size */
	bool opened;
};

struct loadmap_cmd {
	const char *name;
	const char *args; /* for usage */
	int min_args, max_args;
	const char *help;
	int (*run)(struct loadmap_ctx *ctx, int argc, char **argv);
};

void loadmap_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Opens the store and takes its lock (every command sees one state). */
int loadmap_open(struct loadmap_ctx *ctx);
void loadmap_close(struct loadmap_ctx *ctx);
/* The host's identity keys, made on first use. */
int loadmap_identity(struct loadmap_ctx *ctx);

/* Set by SIGINT and SIGTERM once loadmap_open_follower ran. */
extern volatile sig_atomic_t loadmap_stop;
/* watch and sync: the store opened without its lock (taken per change)
 * and the signals caught.  0, or nonzero with the message printed. */
int loadmap_open_follower(struct loadmap_ctx *ctx);

int loadmap_cmd_list(struct loadmap_ctx *ctx, int argc, char **argv);
int loadmap_cmd_show(struct loadmap_ctx *ctx, int argc, char **argv);
int loadmap_cmd_stats(struct loadmap_ctx *ctx, int argc, char **argv);
int loadmap_cmd_sync(struct loadmap_ctx *ctx, int argc, char **argv);

#endif
