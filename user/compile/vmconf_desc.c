/* vmconf_desc.c: the readers of a VM description that every part shares
 * (vmconf_desc.h): MAC addresses, the operator's meta-data by path,
 * credential times. */
#include "compile/vmconf_desc.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static int vc_hex_digit(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

int vmconf_parse_mac(const char *text, uint8_t mac[6])
{
	uint8_t out[6];

	if (strlen(text) != 17)
		return -EINVAL;
	for (int i = 0; i < 6; i++) {
		int hi = vc_hex_digit(text[3 * i]), lo = vc_hex_digit(text[3 * i + 1]);

		if (hi < 0 || lo < 0 || (i < 5 && text[3 * i + 2] != ':'))
			return -EINVAL;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	memcpy(mac, out, 6);
	return 0;
}

void vmconf_format_mac(const uint8_t mac[6], char out[18])
{
	snprintf(out, 18, "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]);
}

const json_t *vmconf_meta_lookup(const struct vm_desc *vm, const char *path)
{
	const json_t *v = vm->meta_data;

	while (v && *path) {
		size_t n = strcspn(path, "/");

		if (!json_is_object(v))
			return NULL;
		v = json_object_getn(v, path, n);
		path += n + (path[n] == '/');
	}
	return v;
}

int vmconf_check_time(const char *s, size_t len)
{
	static const char shape[] = "dddd-dd-ddTdd:dd:ddZ";
	static const int mdays[12] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	int year, mon, day, hour, min, sec;

	if (len != VMCONF_TIME_LEN)
		return -EINVAL;
	for (size_t i = 0; i < len; i++)
		if (shape[i] == 'd' ? (s[i] < '0' || s[i] > '9') : s[i] != shape[i])
			return -EINVAL;
	if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d", &year, &mon, &day, &hour, &min, &sec) != 6)
		return -EINVAL;
	if (mon < 1 || mon > 12 || day < 1 || day > mdays[mon - 1] || hour > 23 || min > 59 || sec > 59)
		return -EINVAL;
	/* February 29th only in leap years. */
	if (mon == 2 && day == 29 && (year % 4 || (year % 100 == 0 && year % 400)))
		return -EINVAL;
	return 0;
}
