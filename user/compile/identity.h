/* identity.h: the host keys that sign every VM's instance identity
 * document, and the three signatures EC2 serves beside it
 * (dynamic/instance-identity/, AWS "verify-iid"):
 *   signature  base64 of an RSA PKCS#1 v1.5 signature over SHA-256 of the
 *              document (EC2: "SHA256 hash ... encrypted using an RSA key")
 *   pkcs7      base64 DER PKCS#7 signed-data carrying the document,
 *              DSA over SHA-1 (EC2's pkcs7 is SHA-1 with DSA)
 *   rsa2048    the same with RSA-2048 over SHA-256
 * Both PKCS#7 bodies are served without PEM armour, as on EC2; every body
 * is base64 in lines of 76 characters with no trailing newline, the layout
 * of EC2's replies.  The PKCS#7 structures hold no certificate, so a
 * relying party verifies with the host certificate it got out of band
 * (`imds-loadmap cert`), never with one a forger could embed.
 *
 * The keys live in a key directory (default /var/lib/imds, or $IMDS_KEY_DIR):
 *   identity-rsa.key, identity-rsa.crt   RSA-2048: signature and rsa2048
 *   identity-dsa.key, identity-dsa.crt   DSA-2048: pkcs7
 * created on first use (keys mode 0600, self-signed certificates 0644).
 * docs/identity.md says how to verify and how to rotate. */
#ifndef IMDS_IDENTITY_H
#define IMDS_IDENTITY_H
#include <stddef.h>
#include <stdint.h>

#include "lib/outbuf.h"

#define IDENTITY_DEFAULT_DIR "/var/lib/imds"
#define IDENTITY_DIR_ENV "IMDS_KEY_DIR"

struct identity_key;

enum identity_cert {
	IDENTITY_CERT_ALL, /* RSA first, then DSA: one file verifies all three */
	IDENTITY_CERT_RSA,
	IDENTITY_CERT_DSA,
};

struct identity_sigs {
	struct outbuf signature;
	struct outbuf pkcs7;
	struct outbuf rsa2048;
};

struct identity_sig_lens {
	size_t signature;
	size_t pkcs7;
	size_t rsa2048;
};

/* $IMDS_KEY_DIR when set and not empty, else IDENTITY_DEFAULT_DIR. */
const char *identity_default_dir(void);

/* Loads the keys and certificates from `dir`, creating the directory
 * (0700), any missing key and any missing certificate (a key without its
 * certificate gets a new self-signed one).  Refuses a key file that group
 * or others may read, a certificate without its key, and a certificate
 * that does not match its key.  0, or a negative errno with err set. */
int identity_key_open(const char *dir, struct identity_key **out, char *err, size_t errlen);
void identity_key_free(struct identity_key *k);

/* Appends the certificate(s) in PEM.  0 or -ENOMEM. */
int identity_cert_pem(const struct identity_key *k, enum identity_cert which, struct outbuf *out);

/* Signs `doc`; both PKCS#7 bodies carry `signing_time` (unix seconds) as
 * their signingTime attribute, so the result depends only on the inputs
 * and the DSA nonce.  0, -ENOMEM or -EIO (OpenSSL failed); on error `out`
 * is left empty.  Free with identity_sigs_free. */
int identity_sign(const struct identity_key *k, const void *doc, size_t len, int64_t signing_time,
		  struct identity_sigs *out);
void identity_sigs_free(struct identity_sigs *s);

/* Upper bounds of the bodies identity_sign makes for a document of
 * `doc_len` bytes, without signing: what the loader reserves in the arena
 * before it signs (a DSA signature's length varies with its nonce). */
void identity_sigs_bound(const struct identity_key *k, size_t doc_len, struct identity_sig_lens *out);

#endif
