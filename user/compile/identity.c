/* identity.c: the host's identity keys (created on first use, kept in a key
 * directory) and the signatures of the instance identity document in EC2's
 * three formats.  Everything cryptographic is OpenSSL's; this file only
 * chooses algorithms, files and layouts (identity.h says which and why). */
#include "compile/identity.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/pkcs7.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

/* EC2 serves base64 in MIME-length lines (76 characters). */
#define IDENTITY_B64_LINE 76
#define IDENTITY_KEY_BITS 2048
/* DSA domain parameters of FIPS 186-4's (L, N) = (2048, 256). */
#define IDENTITY_DSA_Q_BITS 256
#define IDENTITY_CERT_DAYS 3650
/* A relying party whose clock is a little behind still accepts a new
 * certificate. */
#define IDENTITY_CERT_BACKDATE_S (24 * 3600)

enum identity_alg { ID_RSA, ID_DSA, ID_NALGS };

struct identity_pair {
	EVP_PKEY *key;
	X509 *cert;
};

struct identity_key {
	struct identity_pair pair[ID_NALGS];
	/* For identity_sigs_bound: the DER length of each key's PKCS#7 over an
	 * empty document, and the RSA signature's length. */
	size_t empty_der[ID_NALGS];
	size_t rsa_sig_len;
};

/* Between two PKCS#7 of one key, only the document, the signature and the
 * signing time differ.  Nine DER length fields enclose the document or the
 * signature (six around the document, three more around the signature),
 * and each is at most 4 bytes longer than in another structure (a length
 * below 4 GiB takes 1 to 5 bytes); a DSA signature with a 256-bit q is 8 to
 * 72 bytes of DER depending on its nonce; a signing time after 2049 is a
 * GeneralizedTime, 2 bytes longer than a UTCTime. */
#define IDENTITY_DER_GROWTH (9 * 4 + 2)
#define IDENTITY_DSA_SPREAD 64

static const struct {
	const char *stem;	/* identity-<stem>.key and .crt */
	const char *key_type;	/* EVP_PKEY_is_a name */
	const char *unit;	/* certificate OU */
} identity_algs[ID_NALGS] = {
	[ID_RSA] = { "rsa", "RSA", "instance identity RSA" },
	[ID_DSA] = { "dsa", "DSA", "instance identity DSA" },
};

/* err := the message, then OpenSSL's reason for the failure when it has
 * one; OpenSSL's error queue is left empty. */
static int identity_fail(char *err, size_t errlen, int rc, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int identity_fail(char *err, size_t errlen, int rc, const char *fmt, ...)
{
	unsigned long e = ERR_peek_last_error();
	va_list ap;
	size_t n;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	n = strlen(err);
	if (e && ERR_reason_error_string(e) && n < errlen)
		snprintf(err + n, errlen - n, " (%s)", ERR_reason_error_string(e));
	ERR_clear_error();
	return rc;
}

const char *identity_default_dir(void)
{
	const char *dir = getenv(IDENTITY_DIR_ENV);

	return dir && dir[0] ? dir : IDENTITY_DEFAULT_DIR;
}

/* ---- files ---- */

static int identity_mkdirs(const char *dir, char *err, size_t errlen)
{
	char buf[PATH_MAX];

	if (snprintf(buf, sizeof(buf), "%s", dir) >= (int)sizeof(buf))
		return identity_fail(err, errlen, -ENAMETOOLONG, "%s: key directory path is too long", dir);
	for (char *p = buf + 1;; p++) {
		char c = *p;

		if (c != '/' && c != '\0')
			continue;
		*p = '\0';
		if (mkdir(buf, 0700) < 0 && errno != EEXIST) {
			int e = errno;

			return identity_fail(err, errlen, -e, "cannot create key directory %s: %s", buf,
					     strerror(e));
		}
		*p = c;
		if (c == '\0')
			return 0;
	}
}

static int identity_path(char *out, const char *dir, enum identity_alg alg, const char *ext)
{
	int n = snprintf(out, PATH_MAX, "%s/identity-%s.%s", dir, identity_algs[alg].stem, ext);

	return n >= PATH_MAX ? -ENAMETOOLONG : 0;
}

/* Keys are never asked a passphrase for: the loader runs unattended. */
static int identity_no_passphrase(char *buf, int size, int rwflag, void *u)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)u;
	return -1;
}

/* -ENOENT when the file does not exist (err untouched). */
static int identity_open_file(const char *path, FILE **f, struct stat *st, char *err, size_t errlen)
{
	int e;

	*f = fopen(path, "re");
	if (!*f) {
		e = errno;
		return e == ENOENT ? -ENOENT : identity_fail(err, errlen, -e, "cannot open %s: %s", path, strerror(e));
	}
	if (fstat(fileno(*f), st) < 0) {
		e = errno;
		fclose(*f);
		return identity_fail(err, errlen, -e, "cannot stat %s: %s", path, strerror(e));
	}
	return 0;
}

static int identity_read_key(const char *path, enum identity_alg alg, EVP_PKEY **key, char *err, size_t errlen)
{
	struct stat st;
	FILE *f;
	int ret = identity_open_file(path, &f, &st, err, errlen);

	if (ret)
		return ret;
	/* Like ssh: a signing key others can read signs for them too. */
	if (st.st_mode & 077) {
		fclose(f);
		return identity_fail(err, errlen, -EPERM,
				     "%s: the key may be read by group or others (mode %03o): chmod 600 it",
				     path, (unsigned)(st.st_mode & 0777));
	}
	*key = PEM_read_PrivateKey(f, NULL, identity_no_passphrase, NULL);
	fclose(f);
	if (!*key)
		return identity_fail(err, errlen, -EINVAL,
				     "%s: not a PEM private key without passphrase", path);
	if (!EVP_PKEY_is_a(*key, identity_algs[alg].key_type) || EVP_PKEY_get_bits(*key) < IDENTITY_KEY_BITS)
		return identity_fail(err, errlen, -EINVAL, "%s: want a %s key of at least %d bits", path,
				     identity_algs[alg].key_type, IDENTITY_KEY_BITS);
	return 0;
}

static int identity_read_cert(const char *path, X509 **cert, char *err, size_t errlen)
{
	struct stat st;
	FILE *f;
	int ret = identity_open_file(path, &f, &st, err, errlen);

	if (ret)
		return ret;
	*cert = PEM_read_X509(f, NULL, identity_no_passphrase, NULL);
	fclose(f);
	if (!*cert)
		return identity_fail(err, errlen, -EINVAL, "%s: not a PEM certificate", path);
	return 0;
}

/* Writes `path` whole or not at all: a temporary file of mode `mode`,
 * synced, then renamed over the name.  The caller holds the directory
 * lock, so the temporary name is ours. */
static int identity_write_file(const char *path, mode_t mode, EVP_PKEY *key, X509 *cert, char *err,
			       size_t errlen)
{
	char tmp[PATH_MAX + 8];
	FILE *f = NULL;
	int fd, ok, e;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	unlink(tmp);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
	if (fd < 0 || fchmod(fd, mode) < 0 || !(f = fdopen(fd, "w"))) {
		e = errno;
		if (fd >= 0)
			close(fd);
		unlink(tmp);
		return identity_fail(err, errlen, -e, "cannot create %s: %s", tmp, strerror(e));
	}
	ok = key ? PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL) : PEM_write_X509(f, cert);
	errno = 0;
	e = ok && fflush(f) == 0 && fsync(fileno(f)) == 0 ? 0 : (errno ? errno : EIO);
	if (fclose(f) != 0 && !e)
		e = errno;
	if (!e && rename(tmp, path) < 0)
		e = errno;
	if (e) {
		unlink(tmp);
		return identity_fail(err, errlen, -e, "cannot write %s: %s", path, strerror(e));
	}
	return 0;
}

/* ---- new keys and certificates ---- */

static EVP_PKEY *identity_dsa_keygen(void)
{
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "DSA", NULL);
	EVP_PKEY *params = NULL, *key = NULL;

	if (!ctx || EVP_PKEY_paramgen_init(ctx) <= 0 ||
	    EVP_PKEY_CTX_set_dsa_paramgen_bits(ctx, IDENTITY_KEY_BITS) <= 0 ||
	    EVP_PKEY_CTX_set_dsa_paramgen_q_bits(ctx, IDENTITY_DSA_Q_BITS) <= 0 ||
	    EVP_PKEY_paramgen(ctx, &params) <= 0)
		goto out;
	EVP_PKEY_CTX_free(ctx);
	ctx = EVP_PKEY_CTX_new_from_pkey(NULL, params, NULL);
	if (!ctx || EVP_PKEY_keygen_init(ctx) <= 0 || EVP_PKEY_keygen(ctx, &key) <= 0)
		key = NULL;
out:
	EVP_PKEY_CTX_free(ctx);
	EVP_PKEY_free(params);
	return key;
}

static EVP_PKEY *identity_keygen(enum identity_alg alg)
{
	if (alg == ID_RSA)
		return EVP_RSA_gen(IDENTITY_KEY_BITS);
	return identity_dsa_keygen();
}

/* O=imds, OU=instance identity RSA|DSA, CN=<host name>: tells an operator
 * which host and which key a certificate is. */
static int identity_cert_name(X509 *x, enum identity_alg alg)
{
	X509_NAME *name = X509_get_subject_name(x);
	char host[64] = "";

	gethostname(host, sizeof(host) - 1);
	host[sizeof(host) - 1] = '\0';
	if (!host[0])
		snprintf(host, sizeof(host), "imds");
	return X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"imds", -1, -1, 0) &&
	       X509_NAME_add_entry_by_txt(name, "OU", MBSTRING_ASC,
					  (const unsigned char *)identity_algs[alg].unit, -1, -1, 0) &&
	       X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)host, -1, -1, 0) &&
	       X509_set_issuer_name(x, name);
}

/* A signing-only end-entity certificate, so that `openssl smime -verify`
 * accepts it both as the signer and as its own trust anchor (-CAfile). */
static int identity_cert_extensions(X509 *x)
{
	static const struct {
		int nid;
		const char *value;
	} exts[] = {
		{ NID_basic_constraints, "critical,CA:FALSE" },
		{ NID_key_usage, "critical,digitalSignature" },
		{ NID_subject_key_identifier, "hash" },
	};
	X509V3_CTX v3;

	X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
	for (size_t i = 0; i < sizeof(exts) / sizeof(exts[0]); i++) {
		X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, exts[i].nid, exts[i].value);
		int ok = ext && X509_add_ext(x, ext, -1);

		X509_EXTENSION_free(ext);
		if (!ok)
			return 0;
	}
	return 1;
}

static int identity_cert_serial(X509 *x)
{
	unsigned char bytes[16];
	BIGNUM *bn;
	int ok;

	if (RAND_bytes(bytes, sizeof(bytes)) != 1)
		return 0;
	bytes[0] = (bytes[0] & 0x7f) | 0x40; /* positive, 16 bytes long */
	bn = BN_bin2bn(bytes, sizeof(bytes), NULL);
	ok = bn && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x));
	BN_free(bn);
	return ok;
}

static X509 *identity_selfsign(EVP_PKEY *key, enum identity_alg alg)
{
	X509 *x = X509_new();

	if (x && X509_set_version(x, X509_VERSION_3) && identity_cert_serial(x) &&
	    X509_gmtime_adj(X509_getm_notBefore(x), -IDENTITY_CERT_BACKDATE_S) &&
	    X509_time_adj_ex(X509_getm_notAfter(x), IDENTITY_CERT_DAYS, 0, NULL) && X509_set_pubkey(x, key) &&
	    identity_cert_name(x, alg) && identity_cert_extensions(x) && X509_sign(x, key, EVP_sha256()))
		return x;
	X509_free(x);
	return NULL;
}

static int identity_calibrate(struct identity_key *k, char *err, size_t errlen);

/* ---- one key pair ---- */

static int identity_load_key(const char *dir, enum identity_alg alg, struct identity_pair *p, char *err,
			     size_t errlen)
{
	char key_path[PATH_MAX], crt_path[PATH_MAX];
	int ret;

	if (identity_path(key_path, dir, alg, "key") || identity_path(crt_path, dir, alg, "crt"))
		return identity_fail(err, errlen, -ENAMETOOLONG, "%s: key directory path is too long", dir);
	ret = identity_read_key(key_path, alg, &p->key, err, errlen);
	if (ret != -ENOENT)
		return ret;
	/* A certificate that outlived its key certifies nothing we can sign. */
	if (access(crt_path, F_OK) == 0)
		return identity_fail(err, errlen, -ENOENT,
				     "%s exists but its key %s does not: restore the key, or remove the "
				     "certificate to make a new pair",
				     crt_path, key_path);
	p->key = identity_keygen(alg);
	if (!p->key)
		return identity_fail(err, errlen, -EIO, "cannot generate a %s key",
				     identity_algs[alg].key_type);
	return identity_write_file(key_path, 0600, p->key, NULL, err, errlen);
}

static int identity_load_pair(const char *dir, enum identity_alg alg, struct identity_pair *p, char *err,
			      size_t errlen)
{
	char crt_path[PATH_MAX];
	int ret = identity_load_key(dir, alg, p, err, errlen);

	if (ret)
		return ret;
	identity_path(crt_path, dir, alg, "crt");
	ret = identity_read_cert(crt_path, &p->cert, err, errlen);
	if (ret == -ENOENT) {
		p->cert = identity_selfsign(p->key, alg);
		if (!p->cert)
			return identity_fail(err, errlen, -EIO, "cannot make a certificate for %s",
					     crt_path);
		ret = identity_write_file(crt_path, 0644, NULL, p->cert, err, errlen);
	}
	if (ret)
		return ret;
	if (X509_check_private_key(p->cert, p->key) != 1)
		return identity_fail(err, errlen, -EINVAL, "%s is not the certificate of the key beside it",
				     crt_path);
	return 0;
}

/* Two loaders starting at once on a fresh host must agree on one key:
 * the key directory is flock'ed while keys are read or made. */
static int identity_lock_dir(const char *dir, int *fd, char *err, size_t errlen)
{
	int e;

	*fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (*fd < 0) {
		e = errno;
		return identity_fail(err, errlen, -e, "cannot open key directory %s: %s", dir, strerror(e));
	}
	while (flock(*fd, LOCK_EX) < 0) {
		e = errno;
		if (e == EINTR)
			continue;
		close(*fd);
		return identity_fail(err, errlen, -e, "cannot lock key directory %s: %s", dir, strerror(e));
	}
	return 0;
}

int identity_key_open(const char *dir, struct identity_key **out, char *err, size_t errlen)
{
	struct identity_key *k;
	int fd, ret;

	*out = NULL;
	if (!dir[0])
		return identity_fail(err, errlen, -EINVAL, "the key directory is an empty path");
	ret = identity_mkdirs(dir, err, errlen);
	if (!ret)
		ret = identity_lock_dir(dir, &fd, err, errlen);
	if (ret)
		return ret;
	k = calloc(1, sizeof(*k));
	if (!k)
		ret = identity_fail(err, errlen, -ENOMEM, "out of memory");
	for (int alg = 0; !ret && alg < ID_NALGS; alg++)
		ret = identity_load_pair(dir, (enum identity_alg)alg, &k->pair[alg], err, errlen);
	flock(fd, LOCK_UN);
	close(fd);
	if (!ret)
		ret = identity_calibrate(k, err, errlen);
	if (ret) {
		identity_key_free(k);
		return ret;
	}
	*out = k;
	return 0;
}

void identity_key_free(struct identity_key *k)
{
	if (!k)
		return;
	for (int alg = 0; alg < ID_NALGS; alg++) {
		EVP_PKEY_free(k->pair[alg].key);
		X509_free(k->pair[alg].cert);
	}
	free(k);
}

static int identity_append_pem(X509 *cert, struct outbuf *out)
{
	BIO *bio = BIO_new(BIO_s_mem());
	char *data;
	long len;
	int ret = -ENOMEM;

	if (bio && PEM_write_bio_X509(bio, cert) && (len = BIO_get_mem_data(bio, &data)) > 0)
		ret = outbuf_append(out, data, (size_t)len);
	BIO_free(bio);
	ERR_clear_error();
	return ret;
}

int identity_cert_pem(const struct identity_key *k, enum identity_cert which, struct outbuf *out)
{
	int ret = 0;

	if (which != IDENTITY_CERT_DSA)
		ret = identity_append_pem(k->pair[ID_RSA].cert, out);
	if (!ret && which != IDENTITY_CERT_RSA)
		ret = identity_append_pem(k->pair[ID_DSA].cert, out);
	return ret;
}

/* ---- signing ---- */

static int identity_base64(const unsigned char *data, size_t len, struct outbuf *out)
{
	size_t n = 4 * ((len + 2) / 3);
	char *b64 = malloc(n + 1);
	int ret = 0;

	if (!b64)
		return -ENOMEM;
	EVP_EncodeBlock((unsigned char *)b64, data, (int)len);
	for (size_t off = 0; !ret && off < n; off += IDENTITY_B64_LINE) {
		size_t chunk = n - off < IDENTITY_B64_LINE ? n - off : IDENTITY_B64_LINE;

		if (off)
			ret = outbuf_append(out, "\n", 1);
		if (!ret)
			ret = outbuf_append(out, b64 + off, chunk);
	}
	free(b64);
	return ret;
}

/* `signature`: RSA PKCS#1 v1.5 over SHA-256 of the document, what
 * `openssl dgst -sha256 -verify` checks. */
static int identity_sign_raw(EVP_PKEY *key, const void *doc, size_t len, struct outbuf *out)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned char *sig = NULL;
	size_t sig_len = 0;
	int ret = -EIO;

	if (!ctx || EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, key) <= 0 ||
	    EVP_DigestSign(ctx, NULL, &sig_len, doc, len) <= 0)
		goto out;
	sig = OPENSSL_malloc(sig_len);
	if (!sig) {
		ret = -ENOMEM;
		goto out;
	}
	if (EVP_DigestSign(ctx, sig, &sig_len, doc, len) > 0)
		ret = identity_base64(sig, sig_len, out);
out:
	OPENSSL_free(sig);
	EVP_MD_CTX_free(ctx);
	return ret;
}

/* PKCS#7 signed-data with the document inside, as EC2's: signed attributes
 * contentType, signingTime and messageDigest; no certificates and no
 * S/MIME capabilities; the document's bytes signed as they are. */
/* EC2's pkcs7 is DSA over SHA-1; rsa2048 is RSA over SHA-256. */
static const EVP_MD *identity_pkcs7_md(enum identity_alg alg)
{
	return alg == ID_DSA ? EVP_sha1() : EVP_sha256();
}

static int identity_pkcs7_der(const struct identity_pair *p, const EVP_MD *md, const void *doc, size_t len,
			      int64_t signing_time, unsigned char **der)
{
	const int flags = PKCS7_BINARY | PKCS7_NOCERTS | PKCS7_NOSMIMECAP | PKCS7_PARTIAL;
	time_t when = (time_t)signing_time;
	PKCS7 *p7 = PKCS7_sign(NULL, NULL, NULL, NULL, flags);
	PKCS7_SIGNER_INFO *si = p7 ? PKCS7_sign_add_signer(p7, p->cert, p->key, md, flags) : NULL;
	ASN1_TIME *t = si ? X509_time_adj_ex(NULL, 0, 0, &when) : NULL;
	BIO *in = NULL;
	int der_len = -1;

	*der = NULL;
	/* Set before PKCS7_final, which would otherwise stamp the clock's time. */
	if (!t || !PKCS7_add0_attrib_signing_time(si, t)) {
		ASN1_TIME_free(t);
		goto out;
	}
	in = BIO_new_mem_buf(doc, (int)len);
	if (in && PKCS7_final(p7, in, flags))
		der_len = i2d_PKCS7(p7, der);
out:
	BIO_free(in);
	PKCS7_free(p7);
	return der_len;
}

static int identity_sign_pkcs7(const struct identity_pair *p, const EVP_MD *md, const void *doc, size_t len,
			       int64_t signing_time, struct outbuf *out)
{
	unsigned char *der;
	int der_len = identity_pkcs7_der(p, md, doc, len, signing_time, &der);
	int ret = der_len > 0 ? identity_base64(der, (size_t)der_len, out) : -EIO;

	OPENSSL_free(der);
	return ret;
}

int identity_sign(const struct identity_key *k, const void *doc, size_t len, int64_t signing_time,
		  struct identity_sigs *out)
{
	int ret;

	memset(out, 0, sizeof(*out));
	if (len > (size_t)INT_MAX) /* BIO_new_mem_buf takes an int */
		return -EINVAL;
	ret = identity_sign_raw(k->pair[ID_RSA].key, doc, len, &out->signature);
	if (!ret)
		ret = identity_sign_pkcs7(&k->pair[ID_DSA], identity_pkcs7_md(ID_DSA), doc, len, signing_time,
					  &out->pkcs7);
	if (!ret)
		ret = identity_sign_pkcs7(&k->pair[ID_RSA], identity_pkcs7_md(ID_RSA), doc, len, signing_time,
					  &out->rsa2048);
	ERR_clear_error();
	if (ret)
		identity_sigs_free(out);
	return ret;
}

void identity_sigs_free(struct identity_sigs *s)
{
	outbuf_free(&s->signature);
	outbuf_free(&s->pkcs7);
	outbuf_free(&s->rsa2048);
}

/* The sizes identity_sigs_bound starts from: one signing of an empty
 * document with each key. */
static int identity_calibrate(struct identity_key *k, char *err, size_t errlen)
{
	for (int alg = 0; alg < ID_NALGS; alg++) {
		unsigned char *der;
		int der_len = identity_pkcs7_der(&k->pair[alg], identity_pkcs7_md((enum identity_alg)alg), "", 0, 0,
						 &der);

		OPENSSL_free(der);
		if (der_len <= 0)
			return identity_fail(err, errlen, -EIO, "cannot sign with the %s key",
					     identity_algs[alg].key_type);
		k->empty_der[alg] = (size_t)der_len;
	}
	k->rsa_sig_len = (size_t)EVP_PKEY_get_size(k->pair[ID_RSA].key);
	return 0;
}

/* Characters of base64 in lines of 76 for n bytes. */
static size_t identity_b64_len(size_t n)
{
	size_t chars = 4 * ((n + 2) / 3);

	return chars ? chars + (chars - 1) / IDENTITY_B64_LINE : 0;
}

void identity_sigs_bound(const struct identity_key *k, size_t doc_len, struct identity_sig_lens *out)
{
	out->signature = identity_b64_len(k->rsa_sig_len);
	out->pkcs7 = identity_b64_len(k->empty_der[ID_DSA] + doc_len + IDENTITY_DER_GROWTH + IDENTITY_DSA_SPREAD);
	out->rsa2048 = identity_b64_len(k->empty_der[ID_RSA] + doc_len + IDENTITY_DER_GROWTH);
}
