/* macaddr.c: MAC address text (macaddr.h). */
#include "lib/macaddr.h"

#include <stdio.h>

void macaddr_format(const uint8_t mac[6], char out[MACADDR_TEXT_LEN])
{
	snprintf(out, MACADDR_TEXT_LEN, "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3], mac[4],
		 mac[5]);
}
