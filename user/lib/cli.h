/* cli.h: table-driven options.  One table gives getopt_long its options
 * and usage() its text, so help cannot drift from what is parsed. */
#ifndef IMDS_CLI_H
#define IMDS_CLI_H
#include <stdio.h>

struct cli_option {
	const char *name; /* long name, without "--" */
	int short_name;	  /* 0 for none */
	const char *arg;  /* argument name, NULL for a flag */
	const char *help;
};

/* Parses argv with the table (terminated by a zero entry).  For each option
 * found calls on_option(ctx, index in table, optarg) which returns 0 or -1
 * (bad value; it prints why).  Returns optind, or -1 on a usage error (the
 * message is printed).  --help is handled: prints usage, exits 0; so is
 * --version: prints "PROGRAM VERSION", exits 0. */
int cli_parse(int argc, char **argv, const struct cli_option *opts, const char *synopsis,
	      int (*on_option)(void *ctx, int index, const char *optarg), void *ctx);
/* The VERSION file's text, compiled in (the one place it comes from). */
extern const char cli_version[];

/* One "  TERM  TEXT" line of a usage text, columns aligned. */
void cli_usage_line(FILE *f, const char *left, const char *help);
void cli_usage(FILE *f, const char *prog, const char *synopsis, const struct cli_option *opts);

#endif
