/* test_identity.c: the host identity keys and the three signatures of the
 * instance identity document.  Every signature is verified here with
 * OpenSSL's own verifiers against the certificate on disk (the way a relying
 * party does), and a tampered document must fail each of them.  Also: the
 * key directory's files and modes, the refusals, and vm_compile_signed's
 * leaves. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/pkcs7.h>
#include <openssl/x509.h>

#include "compile/compile.h"
#include "compile/ec2.h"
#include "compile/identity.h"

#define DOC "{\n  \"accountId\" : null,\n  \"instanceId\" : \"i-0abc\",\n  \"version\" : \"2017-09-30\"\n}"
/* Same length, one character changed: only the signature can tell. */
#define TAMPERED "{\n  \"accountId\" : null,\n  \"instanceId\" : \"i-0abd\",\n  \"version\" : \"2017-09-30\"\n}"
#define SIGNING_TIME 1780000000 /* 2026-05-28T20:26:40Z */

struct fixture {
	char dir[64];
	struct identity_key *key;
};

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void rm_tree(const char *dir)
{
	nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

static void key_path(char *out, size_t outlen, const char *dir, const char *name)
{
	snprintf(out, outlen, "%s/%s", dir, name);
}

/* Keys are made once for the whole file: DSA parameters take a while. */
static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	char err[512];

	if (!f)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/imds-test-identity-XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	/* A directory below the temporary one: made by identity_key_open. */
	strcat(f->dir, "/keys");
	if (identity_key_open(f->dir, &f->key, err, sizeof(err))) {
		fprintf(stderr, "identity_key_open: %s\n", err);
		return -1;
	}
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	identity_key_free(f->key);
	*strrchr(f->dir, '/') = '\0';
	rm_tree(f->dir);
	free(f);
	return 0;
}

/* The certificate as a relying party has it: read back from the file. */
static X509 *read_cert(const char *dir, const char *name)
{
	char path[128];
	FILE *fp;
	X509 *x;

	key_path(path, sizeof(path), dir, name);
	fp = fopen(path, "r");
	assert_non_null(fp);
	x = PEM_read_X509(fp, NULL, NULL, NULL);
	fclose(fp);
	assert_non_null(x);
	return x;
}

/* Every body: base64 in lines of at most 76 characters, the last one
 * without a newline. */
static unsigned char *decode_body(const struct outbuf *b, int *len)
{
	char *flat = malloc(b->len + 1);
	unsigned char *out;
	size_t n = 0, line = 0;
	int pad = 0;

	assert_non_null(flat);
	assert_true(b->len > 0);
	assert_int_not_equal(b->data[b->len - 1], '\n');
	for (size_t i = 0; i < b->len; i++) {
		if (b->data[i] == '\n') {
			assert_int_equal(line, 76); /* only the last line is shorter */
			line = 0;
			continue;
		}
		assert_true(++line <= 76);
		flat[n++] = b->data[i];
	}
	assert_int_equal(n % 4, 0);
	pad = (n && flat[n - 1] == '=') + (n > 1 && flat[n - 2] == '=');
	out = malloc(n);
	assert_non_null(out);
	*len = EVP_DecodeBlock(out, (unsigned char *)flat, (int)n);
	assert_true(*len > 0);
	*len -= pad;
	free(flat);
	return out;
}

/* `openssl dgst -sha256 -verify key -signature sig document`. */
static int verify_signature(X509 *cert, const struct outbuf *sig_b64, const char *doc)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	int sig_len, ok;
	unsigned char *sig = decode_body(sig_b64, &sig_len);

	assert_non_null(ctx);
	assert_int_equal(EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, X509_get0_pubkey(cert)), 1);
	ok = EVP_DigestVerify(ctx, sig, (size_t)sig_len, (const unsigned char *)doc, strlen(doc));
	EVP_MD_CTX_free(ctx);
	free(sig);
	ERR_clear_error();
	return ok == 1;
}

static PKCS7 *decode_pkcs7(const struct outbuf *b64)
{
	int der_len;
	unsigned char *der = decode_body(b64, &der_len);
	const unsigned char *p = der;
	PKCS7 *p7 = d2i_PKCS7(NULL, &p, der_len);

	assert_non_null(p7);
	assert_ptr_equal(p, der + der_len);
	free(der);
	return p7;
}

/* `openssl smime -verify -certfile cert -CAfile cert -nointern [-content
 * doc]`: the certificate is both the signer and the trust anchor.  With
 * `doc` the signature is checked against it instead of the content inside;
 * *content gets what the signature covers. */
static int verify_pkcs7(X509 *cert, PKCS7 *p7, const char *doc, char **content)
{
	STACK_OF(X509) *certs = sk_X509_new_null();
	X509_STORE *store = X509_STORE_new();
	BIO *in = doc ? BIO_new_mem_buf(doc, (int)strlen(doc)) : NULL;
	BIO *out = BIO_new(BIO_s_mem());
	char *data;
	long len;
	int ok;

	assert_true(certs && store && out && sk_X509_push(certs, cert) && X509_STORE_add_cert(store, cert));
	ok = PKCS7_verify(p7, certs, store, in, out, PKCS7_NOINTERN | PKCS7_BINARY);
	len = BIO_get_mem_data(out, &data);
	if (content)
		*content = strndup(data, (size_t)len);
	BIO_free(out);
	BIO_free(in);
	X509_STORE_free(store);
	sk_X509_free(certs);
	ERR_clear_error();
	return ok == 1;
}

/* EC2's shape: one signer with the given digest and signature algorithms,
 * no certificates inside, no S/MIME capabilities, signingTime as asked. */
static void expect_pkcs7_shape(PKCS7 *p7, int digest_nid, int sig_nid)
{
	ASN1_TIME *want = ASN1_TIME_set(NULL, SIGNING_TIME);
	PKCS7_SIGNER_INFO *si;
	X509_ALGOR *dig, *sig;
	ASN1_TYPE *t;

	assert_non_null(want);
	assert_true(PKCS7_type_is_signed(p7));
	assert_null(p7->d.sign->cert);
	assert_int_equal(sk_PKCS7_SIGNER_INFO_num(p7->d.sign->signer_info), 1);
	si = sk_PKCS7_SIGNER_INFO_value(p7->d.sign->signer_info, 0);
	PKCS7_SIGNER_INFO_get0_algs(si, NULL, &dig, &sig);
	assert_int_equal(OBJ_obj2nid(dig->algorithm), digest_nid);
	assert_int_equal(OBJ_obj2nid(sig->algorithm), sig_nid);
	t = PKCS7_get_signed_attribute(si, NID_pkcs9_signingTime);
	assert_non_null(t);
	assert_int_equal(t->type, V_ASN1_UTCTIME);
	assert_int_equal(ASN1_TIME_compare(t->value.utctime, want), 0);
	assert_null(PKCS7_get_signed_attribute(si, NID_SMIMECapabilities));
	ASN1_TIME_free(want);
}

static void test_files_and_modes(void **state)
{
	struct fixture *f = *state;
	static const struct {
		const char *name;
		mode_t mode;
	} files[] = {
		{ "identity-rsa.key", 0600 },
		{ "identity-rsa.crt", 0644 },
		{ "identity-dsa.key", 0600 },
		{ "identity-dsa.crt", 0644 },
	};
	char path[128];
	struct stat st;

	assert_int_equal(stat(f->dir, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		key_path(path, sizeof(path), f->dir, files[i].name);
		assert_int_equal(stat(path, &st), 0);
		assert_int_equal(st.st_mode & 0777, files[i].mode);
	}
}

/* A second open finds the same keys: what it prints is what it signed with. */
static void test_reopen_same_key(void **state)
{
	struct fixture *f = *state;
	struct outbuf a = { 0 }, b = { 0 };
	struct identity_key *again;
	char err[512];

	assert_int_equal(identity_key_open(f->dir, &again, err, sizeof(err)), 0);
	assert_int_equal(identity_cert_pem(f->key, IDENTITY_CERT_ALL, &a), 0);
	assert_int_equal(identity_cert_pem(again, IDENTITY_CERT_ALL, &b), 0);
	assert_int_equal(a.len, b.len);
	assert_memory_equal(a.data, b.data, a.len);
	/* RSA first, then DSA. */
	assert_non_null(strstr(a.data, "-----BEGIN CERTIFICATE-----"));
	assert_non_null(strstr(strstr(a.data, "-----END CERTIFICATE-----"), "-----BEGIN CERTIFICATE-----"));
	identity_key_free(again);
	outbuf_free(&a);
	outbuf_free(&b);
}

static void test_signature(void **state)
{
	struct fixture *f = *state;
	X509 *rsa = read_cert(f->dir, "identity-rsa.crt");
	struct identity_sigs sigs;
	int len;
	unsigned char *raw;

	assert_int_equal(identity_sign(f->key, DOC, strlen(DOC), SIGNING_TIME, &sigs), 0);
	raw = decode_body(&sigs.signature, &len);
	assert_int_equal(len, 256); /* RSA-2048 */
	free(raw);
	assert_true(verify_signature(rsa, &sigs.signature, DOC));
	assert_false(verify_signature(rsa, &sigs.signature, TAMPERED));
	identity_sigs_free(&sigs);
	X509_free(rsa);
}

static void check_pkcs7(struct fixture *f, const struct outbuf *body, const char *cert_name, const char *other_name,
			int digest_nid, int sig_nid)
{
	X509 *cert = read_cert(f->dir, cert_name), *other = read_cert(f->dir, other_name);
	PKCS7 *p7 = decode_pkcs7(body);
	char *content = NULL;

	expect_pkcs7_shape(p7, digest_nid, sig_nid);
	/* The document is inside, and it is what was signed. */
	assert_true(verify_pkcs7(cert, p7, NULL, &content));
	assert_string_equal(content, DOC);
	free(content);
	assert_true(verify_pkcs7(cert, p7, DOC, NULL));
	/* A relying party checking the document it received. */
	assert_false(verify_pkcs7(cert, p7, TAMPERED, NULL));
	/* The other host certificate did not sign it. */
	assert_false(verify_pkcs7(other, p7, NULL, NULL));
	PKCS7_free(p7);
	X509_free(cert);
	X509_free(other);
}

static void test_pkcs7_dsa_sha1(void **state)
{
	struct fixture *f = *state;
	struct identity_sigs sigs;

	assert_int_equal(identity_sign(f->key, DOC, strlen(DOC), SIGNING_TIME, &sigs), 0);
	check_pkcs7(f, &sigs.pkcs7, "identity-dsa.crt", "identity-rsa.crt", NID_sha1, NID_dsaWithSHA1);
	identity_sigs_free(&sigs);
}

static void test_rsa2048_sha256(void **state)
{
	struct fixture *f = *state;
	struct identity_sigs sigs;

	assert_int_equal(identity_sign(f->key, DOC, strlen(DOC), SIGNING_TIME, &sigs), 0);
	check_pkcs7(f, &sigs.rsa2048, "identity-rsa.crt", "identity-dsa.crt", NID_sha256, NID_rsaEncryption);
	identity_sigs_free(&sigs);
}

/* The document changed inside the PKCS#7 itself (same length, so the DER
 * stays well-formed): the signature no longer matches. */
static void test_tampered_content_inside(void **state)
{
	struct fixture *f = *state;
	X509 *rsa = read_cert(f->dir, "identity-rsa.crt");
	struct identity_sigs sigs;
	PKCS7 *p7;
	ASN1_OCTET_STRING *data;

	assert_int_equal(identity_sign(f->key, DOC, strlen(DOC), SIGNING_TIME, &sigs), 0);
	p7 = decode_pkcs7(&sigs.rsa2048);
	data = p7->d.sign->contents->d.data;
	assert_int_equal(data->length, (int)strlen(DOC));
	memcpy(data->data, TAMPERED, strlen(TAMPERED));
	assert_false(verify_pkcs7(rsa, p7, NULL, NULL));
	PKCS7_free(p7);
	identity_sigs_free(&sigs);
	X509_free(rsa);
}

/* identity_sigs_bound holds for every signing, whatever the DSA nonce, for
 * documents around each DER length boundary; and it is not wasteful. */
static void test_bound_holds(void **state)
{
	static const size_t lens[] = { 0, 1, 100, 127, 128, 200, 255, 256, 600, 4000, 65535, 65536, 70000 };
	struct fixture *f = *state;
	char *doc = malloc(70000);

	assert_non_null(doc);
	memset(doc, 'x', 70000);
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		struct identity_sig_lens bound;

		identity_sigs_bound(f->key, lens[i], &bound);
		for (int round = 0; round < 16; round++) {
			struct identity_sigs sigs;

			assert_int_equal(identity_sign(f->key, doc, lens[i], SIGNING_TIME, &sigs), 0);
			assert_true(sigs.signature.len <= bound.signature);
			assert_true(sigs.pkcs7.len <= bound.pkcs7);
			assert_true(sigs.rsa2048.len <= bound.rsa2048);
			assert_true(bound.pkcs7 - sigs.pkcs7.len < 160);
			assert_true(bound.rsa2048 - sigs.rsa2048.len < 80);
			assert_int_equal(sigs.signature.len, bound.signature);
			identity_sigs_free(&sigs);
		}
	}
	free(doc);
}

static void copy_file(const char *from, const char *to)
{
	char buf[8192];
	FILE *in = fopen(from, "r"), *out = fopen(to, "w");
	size_t n;

	assert_true(in && out);
	while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
		assert_int_equal(fwrite(buf, 1, n, out), n);
	fclose(in);
	fclose(out);
}

static void expect_refused(const char *dir, int want, const char *needle)
{
	struct identity_key *k = NULL;
	char err[512] = "";

	assert_int_equal(identity_key_open(dir, &k, err, sizeof(err)), want);
	assert_null(k);
	if (!strstr(err, needle))
		fail_msg("error \"%s\" does not mention \"%s\"", err, needle);
}

/* A second key directory, to break in the ways an operator might. */
static void test_refusals(void **state)
{
	struct fixture *f = *state;
	char dir[96], path[160], other[160];
	struct identity_key *k;
	char err[512];

	snprintf(dir, sizeof(dir), "%s-b", f->dir);
	assert_int_equal(identity_key_open(dir, &k, err, sizeof(err)), 0);
	identity_key_free(k);

	/* A key others may read. */
	key_path(path, sizeof(path), dir, "identity-rsa.key");
	assert_int_equal(chmod(path, 0640), 0);
	expect_refused(dir, -EPERM, "identity-rsa.key: the key may be read by group or others (mode 640)");
	assert_int_equal(chmod(path, 0600), 0);

	/* A certificate of another key. */
	key_path(path, sizeof(path), dir, "identity-dsa.crt");
	key_path(other, sizeof(other), f->dir, "identity-dsa.crt");
	copy_file(other, path);
	expect_refused(dir, -EINVAL, "identity-dsa.crt is not the certificate of the key beside it");

	/* A key without certificate gets a new one, which matches. */
	assert_int_equal(unlink(path), 0);
	assert_int_equal(identity_key_open(dir, &k, err, sizeof(err)), 0);
	identity_key_free(k);
	assert_int_equal(access(path, R_OK), 0);

	/* A certificate without its key. */
	key_path(path, sizeof(path), dir, "identity-dsa.key");
	assert_int_equal(unlink(path), 0);
	expect_refused(dir, -ENOENT, "identity-dsa.crt exists but its key");

	/* Not a key at all. */
	copy_file(other, path);
	assert_int_equal(chmod(path, 0600), 0);
	expect_refused(dir, -EINVAL, "identity-dsa.key: not a PEM private key");
	rm_tree(dir);
}

static const char *lookup(const struct tree_view *v, const char *path, size_t *len)
{
	struct tree_entry e;

	if (tree_lookup(v, path, strlen(path), &e))
		return NULL;
	*len = e.body_len;
	return e.body;
}

static void body_to_outbuf(const char *body, size_t len, struct outbuf *b)
{
	memset(b, 0, sizeof(*b));
	assert_int_equal(outbuf_append(b, body, len), 0);
}

/* The tree's signatures cover the tree's document, byte for byte; without
 * a key vm_compile's tree has none of them. */
static void test_compile_signed(void **state)
{
	struct fixture *f = *state;
	static const char json[] =
		"{\"vms\": [{\"instance-id\": \"i-sig\", \"mac\": \"52:54:00:00:00:01\", \"ipv4\": \"10.9.0.1\"}]}";
	struct tree_meta meta = { .last_modified = SIGNING_TIME };
	X509 *rsa = read_cert(f->dir, "identity-rsa.crt");
	struct outbuf doc = { 0 }, sig, p7b64;
	struct conf_error cerr;
	struct vm_set set;
	struct tree_view v;
	const char *body;
	char err[256], *content = NULL;
	void *img;
	size_t len, n;
	PKCS7 *p7;

	assert_int_equal(vmconf_parse("t.json", json, strlen(json), &set, &cerr), 0);
	assert_int_equal(vm_compile_signed(&set.vms[0], &meta, f->key, &img, &len, err, sizeof(err)), 0);
	assert_int_equal(tree_view_init(&v, img, len), 0);
	body = lookup(&v, "ec2/dynamic/instance-identity/", &n);
	assert_non_null(body);
	assert_int_equal(n, strlen("document\npkcs7\nrsa2048\nsignature"));
	assert_memory_equal(body, "document\npkcs7\nrsa2048\nsignature", n);
	assert_int_equal(ec2_identity_document(&set.vms[0], &doc), 0);
	body = lookup(&v, "ec2/dynamic/instance-identity/document", &n);
	assert_true(body && n == doc.len && memcmp(body, doc.data, n) == 0);

	body = lookup(&v, "ec2/dynamic/instance-identity/signature", &n);
	assert_non_null(body);
	body_to_outbuf(body, n, &sig);
	assert_true(verify_signature(rsa, &sig, doc.data));

	body = lookup(&v, "ec2/dynamic/instance-identity/rsa2048", &n);
	assert_non_null(body);
	body_to_outbuf(body, n, &p7b64);
	p7 = decode_pkcs7(&p7b64);
	assert_true(verify_pkcs7(rsa, p7, NULL, &content));
	assert_string_equal(content, doc.data);
	free(content);
	PKCS7_free(p7);
	assert_non_null(lookup(&v, "ec2/dynamic/instance-identity/pkcs7", &n));
	free(img);

	/* The loader's planning bound covers the signed tree. */
	assert_int_equal(vm_compile_bound(&set.vms[0], &meta, f->key, &n, err, sizeof(err)), 0);
	assert_true(n >= len && n < len + 256);

	/* No key, no signatures. */
	assert_int_equal(vm_compile(&set.vms[0], &meta, &img, &len, err, sizeof(err)), 0);
	assert_int_equal(tree_view_init(&v, img, len), 0);
	assert_null(lookup(&v, "ec2/dynamic/instance-identity/signature", &n));
	assert_null(lookup(&v, "ec2/dynamic/instance-identity/pkcs7", &n));
	assert_null(lookup(&v, "ec2/dynamic/instance-identity/rsa2048", &n));
	body = lookup(&v, "ec2/dynamic/instance-identity/", &n);
	assert_true(body && n == 8 && memcmp(body, "document", 8) == 0);
	free(img);

	outbuf_free(&sig);
	outbuf_free(&p7b64);
	outbuf_free(&doc);
	vmconf_free(&set);
	X509_free(rsa);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_files_and_modes),
		cmocka_unit_test(test_reopen_same_key),
		cmocka_unit_test(test_signature),
		cmocka_unit_test(test_pkcs7_dsa_sha1),
		cmocka_unit_test(test_rsa2048_sha256),
		cmocka_unit_test(test_tampered_content_inside),
		cmocka_unit_test(test_bound_holds),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_compile_signed),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
