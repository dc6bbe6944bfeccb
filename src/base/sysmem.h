/* sysmem.h: how much memory this machine can still give, to refuse an
 * allocation that cannot fit before making it (a file claiming a context of
 * 2^20 positions must end in one clear error, not in the OOM killer). */
#ifndef GRETA_SYSMEM_H
#define GRETA_SYSMEM_H

#include <stdbool.h>
#include <stdint.h>

/* Bytes available for new allocations without swapping: MemAvailable from
 * /proc/meminfo, else free + buffer RAM from sysinfo(2). The value name
 * ("MemAvailable" or "free RAM") goes to *source. False if neither can be
 * read. */
bool sysmem_available(uint64_t *bytes, const char **source);

#endif
