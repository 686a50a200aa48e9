/* cli.c: getopt_long and usage() generated from one option table. */
#include "lib/cli.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#define CLI_MAX_OPTIONS 32
/* getopt_long's value for --version: above every table index (256 + n). */
#define CLI_VERSION (256 + CLI_MAX_OPTIONS)

/* The Makefile passes the VERSION file's text; a build without it still
 * says which program it is. */
#ifndef IMDS_VERSION
#define IMDS_VERSION "unknown"
#endif

const char cli_version[] = IMDS_VERSION;

/* At least two spaces between the two columns, however long the left one:
 * help2man (the man pages) tells a term from its text by them. */
void cli_usage_line(FILE *f, const char *left, const char *help)
{
	fprintf(f, "  %-28s  %s\n", left, help);
}

/* The program's name without its directory: what the usage line and
 * --version show, whatever path it was started by. */
static const char *cli_basename(const char *argv0)
{
	const char *slash = strrchr(argv0, '/');

	return slash ? slash + 1 : argv0;
}

void cli_usage(FILE *f, const char *prog, const char *synopsis, const struct cli_option *opts)
{
	fprintf(f, "usage: %s %s\n\noptions:\n", cli_basename(prog), synopsis);
	for (const struct cli_option *o = opts; o->name; o++) {
		char left[64];

		/* "-p, --pin-dir DIR" or "    --pin-dir DIR": long names line up */
		if (o->short_name)
			snprintf(left, sizeof(left), "-%c, --%s%s%s", o->short_name, o->name, o->arg ? " " : "",
				 o->arg ? o->arg : "");
		else
			snprintf(left, sizeof(left), "    --%s%s%s", o->name, o->arg ? " " : "", o->arg ? o->arg : "");
		cli_usage_line(f, left, o->help);
	}
	cli_usage_line(f, "-h, --help", "show this help");
	cli_usage_line(f, "    --version", "print the version and exit");
}

/* "imdsd 0.1.0", as help2man and packaging tools expect. */
static void cli_print_version(const char *argv0)
{
	printf("%s %s\n", cli_basename(argv0), cli_version);
}

static int cli_build(const struct cli_option *opts, struct option *longs, char *shorts)
{
	int n = 0;
	char *s = shorts;

	*s++ = '+'; /* stop at the first non-option: it is the command */
	for (const struct cli_option *o = opts; o->name && n < CLI_MAX_OPTIONS; o++, n++) {
		longs[n] = (struct option){ o->name, o->arg ? required_argument : no_argument, NULL, 256 + n };
		if (o->short_name) {
			*s++ = (char)o->short_name;
			if (o->arg)
				*s++ = ':';
		}
	}
	longs[n++] = (struct option){ "help", no_argument, NULL, 'h' };
	longs[n++] = (struct option){ "version", no_argument, NULL, CLI_VERSION };
	longs[n] = (struct option){ 0 };
	*s++ = 'h';
	*s = '\0';
	return n;
}

static int cli_index_of_short(const struct cli_option *opts, int c)
{
	for (int i = 0; opts[i].name; i++)
		if (opts[i].short_name == c)
			return i;
	return -1;
}

int cli_parse(int argc, char **argv, const struct cli_option *opts, const char *synopsis,
	      int (*on_option)(void *ctx, int index, const char *optarg), void *ctx)
{
	struct option longs[CLI_MAX_OPTIONS + 3];
	char shorts[3 * CLI_MAX_OPTIONS + 4];
	int c;

	cli_build(opts, longs, shorts);
	optind = 1;
	while ((c = getopt_long(argc, argv, shorts, longs, NULL)) != -1) {
		int index = c >= 256 ? c - 256 : cli_index_of_short(opts, c);

		if (c == 'h') {
			cli_usage(stdout, argv[0], synopsis, opts);
			exit(0);
		}
		if (c == CLI_VERSION) {
			cli_print_version(argv[0]);
			exit(0);
		}
		if (index < 0) {
			cli_usage(stderr, argv[0], synopsis, opts);
			return -1;
		}
		if (on_option(ctx, index, optarg) < 0)
			return -1;
	}
	return optind;
}
