/* smbios.h: the libvirt <sysinfo> block that makes a guest look like EC2
 * to cloud-init (docs/libvirt.md): its DMI system UUID and serial start
 * with "ec2" and are equal, the vendor and manufacturer are "Amazon EC2".
 * cloud-init uses IMDSv2 tokens only on such guests
 * (../shared/spec/real-clients.md point 9).
 */
#ifndef IMDS_SMBIOS_H
#define IMDS_SMBIOS_H
#include <stdio.h>

/* "ec2" + 29 hex digits in UUID form, from SHA-256 of the instance-id: the
 * same on every host and every run.  0 or -EIO. */
int smbios_ec2_uuid(const char *instance_id, char out[37]);

/* Writes the domain's <uuid>, the <sysinfo type='smbios'> block and the
 * <os><smbios mode='sysinfo'/> line; product is the DMI product name (EC2
 * shows the instance type there).  0 or negative errno. */
int smbios_write_sysinfo(FILE *f, const char *instance_id, const char *product);

#endif
