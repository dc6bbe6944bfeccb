/* faults.c: names of the planted faults, and in the test build
 * (-DGRETA_FAULTS) the switch that selects one (faults.h). */
#include "base/faults.h"

#include <string.h>

static const char *const fault_names[FAULT_COUNT] = {
    "none", "k_transposed", "decode_pos", "rope_pos", "stale_kv", "rms_eps", "embed_row",
};

const char *fault_name(fault_kind fault) {
    return (int)fault >= 0 && fault < FAULT_COUNT ? fault_names[fault] : "?";
}

int fault_from_name(const char *name) {
    for (int f = 0; f < FAULT_COUNT; f++)
        if (strcmp(name, fault_names[f]) == 0) return f;
    return -1;
}

#ifdef GRETA_FAULTS
/* The one piece of global state: a test-only configuration switch. */
static fault_kind active_fault = FAULT_NONE;

void faults_set(fault_kind fault) { active_fault = fault; }

fault_kind faults_active(void) { return active_fault; }
#endif
