/* page.h: the chat page served at "/": src/server/page.html, turned into
 * a byte array at build time by the Makefile ($(BUILD)/gen/server_page.c). */
#ifndef GRETA_SERVER_PAGE_H
#define GRETA_SERVER_PAGE_H

#include <stddef.h>

extern const unsigned char server_page_html[];
extern const size_t server_page_html_len;

#endif
