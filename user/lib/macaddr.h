/* macaddr.h: printing a MAC address the one way imds shows it
 * ("52:54:00:12:34:56", lower case), for messages of every layer. */
#ifndef IMDS_MACADDR_H
#define IMDS_MACADDR_H
#include <stdint.h>

#define MACADDR_TEXT_LEN 18 /* "xx:xx:xx:xx:xx:xx" and its NUL */

void macaddr_format(const uint8_t mac[6], char out[MACADDR_TEXT_LEN]);

#endif
