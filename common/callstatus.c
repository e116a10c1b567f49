/* Call status names (callstatus.h). */
#include "callstatus.h"

#include <string.h>

static const char *const status_names[P2P_CALL_STATUS_COUNT] = {
    "pushed", "queued", "running", "done", "failed", "terminated",
};

const char *p2p_call_status_name(p2p_call_status status) {
    if ((int)status < 0 || (int)status >= P2P_CALL_STATUS_COUNT)
        return "unknown";
    return status_names[status];
}

int p2p_call_status_parse(const char *name, p2p_call_status *out) {
    for (int i = 0; name != NULL && i < P2P_CALL_STATUS_COUNT; i++) {
        if (strcmp(name, status_names[i]) == 0) {
            *out = (p2p_call_status)i;
            return 0;
        }
    }
    return P2P_EINVAL;
}

bool p2p_call_status_finished(p2p_call_status status) {
    return status == P2P_CALL_DONE || status == P2P_CALL_FAILED || status == P2P_CALL_TERMINATED;
}
