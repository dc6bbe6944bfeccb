/* sysmem.c: see sysmem.h. */
#include "base/sysmem.h"

#include <stdio.h>
#include <string.h>
#include <sys/sysinfo.h>

/* The "MemAvailable:   N kB" line of /proc/meminfo, in bytes. */
static bool meminfo_available(uint64_t *bytes) {
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return false;
    char line[256];
    bool found = false;
    while (!found && fgets(line, sizeof line, f)) {
        unsigned long long kb = 0;
        if (strncmp(line, "MemAvailable:", 13) == 0 && sscanf(line + 13, "%llu", &kb) == 1) {
            *bytes = (uint64_t)kb * 1024u;
            found = true;
        }
    }
    fclose(f);
    return found;
}

bool sysmem_available(uint64_t *bytes, const char **source) {
    if (meminfo_available(bytes)) {
        *source = "MemAvailable";
        return true;
    }
    struct sysinfo si;
    if (sysinfo(&si) != 0) return false;
    *bytes = ((uint64_t)si.freeram + (uint64_t)si.bufferram) * (uint64_t)si.mem_unit;
    *source = "free RAM";
    return true;
}
