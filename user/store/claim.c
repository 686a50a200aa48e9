/* claim.c: one imdsd per store.  Two imdsd on one pin directory would
 * attach their own programs to the same ports, answer for the same VMs and
 * count the same limits twice; so imdsd holds an exclusive flock on the
 * directory PIN_DIR/imdsd-lock for as long as it runs.  bpffs holds no
 * regular files, so the holder's PID is not written anywhere: the kernel
 * knows it, and /proc/locks says it (docs/ports.md, "Several bridges").
 * The lock is the directory's own inode, not the pin directory, which the
 * writers (imds-loadmap) flock for short moments. */
#include "store/store.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

/* bpffs refuses names with a dot. */
#define CLAIM_DIR "imdsd-lock"

/* The PID /proc/locks gives for a FLOCK lock on the inode st, or 0. */
static int claim_holder(const struct stat *st)
{
	FILE *f = fopen("/proc/locks", "r");
	char line[256];
	int pid = 0;

	while (f && !pid && fgets(line, sizeof(line), f)) {
		unsigned maj, min;
		unsigned long ino;
		char kind[16];
		int p;

		/* "1: FLOCK  ADVISORY  WRITE 23756 00:27:11141693 0 EOF" */
		if (sscanf(line, "%*d: %15s %*s %*s %d %x:%x:%lu", kind, &p, &maj, &min, &ino) == 5 &&
		    strcmp(kind, "FLOCK") == 0 && ino == st->st_ino && maj == major(st->st_dev) &&
		    min == minor(st->st_dev))
			pid = p;
	}
	if (f)
		fclose(f);
	return pid;
}

int store_claim(const struct store *s, int *fd, int *holder)
{
	char path[sizeof(s->pin_dir) + sizeof(CLAIM_DIR) + 1];
	struct stat st;
	int rc;

	*fd = -1;
	*holder = 0;
	snprintf(path, sizeof(path), "%s/%s", s->pin_dir, CLAIM_DIR);
	if (mkdir(path, 0700) < 0 && errno != EEXIST)
		return -errno;
	rc = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (rc < 0)
		return -errno;
	if (flock(rc, LOCK_EX | LOCK_NB) == 0) {
		*fd = rc;
		return 0;
	}
	if (errno != EWOULDBLOCK) {
		int e = errno;

		close(rc);
		return -e;
	}
	if (fstat(rc, &st) == 0)
		*holder = claim_holder(&st);
	close(rc);
	return -EBUSY;
}
