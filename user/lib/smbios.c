/* smbios.c: owns the EC2-looking SMBIOS identity of a libvirt guest, as
 * libvirt domain XML (smbios.h). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>

#include "lib/smbios.h"

int smbios_ec2_uuid(const char *instance_id, char out[37])
{
	unsigned char d[EVP_MAX_MD_SIZE];
	char hex[33];
	unsigned int n = 0;

	if (!EVP_Digest(instance_id, strlen(instance_id), d, &n, EVP_sha256(), NULL) || n < 16)
		return -EIO;
	for (int i = 0; i < 16; i++)
		snprintf(hex + 2 * i, 3, "%02x", d[i]);
	/* libvirt requires <sysinfo>'s uuid to be the domain's <uuid>, and
	 * cloud-init wants it to start with "ec2" and equal the serial. */
	snprintf(out, 37, "ec2%.5s-%.4s-%.4s-%.4s-%.12s", hex, hex + 5, hex + 9, hex + 13, hex + 17);
	return 0;
}

/* XML text content: escapes the characters that would end it. */
static void smbios_put_text(FILE *f, const char *s)
{
	for (; *s; s++) {
		if (*s == '<')
			fputs("&lt;", f);
		else if (*s == '&')
			fputs("&amp;", f);
		else if (*s == '>')
			fputs("&gt;", f);
		else
			fputc(*s, f);
	}
}

int smbios_write_sysinfo(FILE *f, const char *instance_id, const char *product)
{
	char uuid[37];
	int rc = smbios_ec2_uuid(instance_id, uuid);

	if (rc < 0)
		return rc;
	fprintf(f, "<!-- imds: EC2 identity of ");
	smbios_put_text(f, instance_id);
	fprintf(f, " for cloud-init (docs/libvirt.md); its uuid replaces the domain's -->\n"
		"<uuid>%s</uuid>\n"
		"<sysinfo type='smbios'>\n"
		"  <bios>\n    <entry name='vendor'>Amazon EC2</entry>\n  </bios>\n"
		"  <system>\n    <entry name='manufacturer'>Amazon EC2</entry>\n    <entry name='product'>", uuid);
	smbios_put_text(f, product);
	fprintf(f, "</entry>\n    <entry name='serial'>%s</entry>\n    <entry name='uuid'>%s</entry>\n"
		"  </system>\n  <chassis>\n    <entry name='manufacturer'>Amazon EC2</entry>\n"
		"    <entry name='asset'>", uuid, uuid);
	smbios_put_text(f, instance_id);
	fprintf(f, "</entry>\n  </chassis>\n</sysinfo>\n"
		"<!-- inside the domain's <os> element: -->\n<os>\n  <smbios mode='sysinfo'/>\n</os>\n");
	return ferror(f) ? -EIO : 0;
}
