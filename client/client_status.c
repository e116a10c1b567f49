/* The small pure parts of client.h: option defaults and status names. */
#include "client.h"

#include <string.h>

void p2p_client_options_init(p2p_client_options *opts) {
    memset(opts, 0, sizeof(*opts));
    opts->connect_timeout_ms = P2P_CLIENT_DEFAULT_CONNECT_TIMEOUT_MS;
    opts->request_timeout_ms = P2P_CLIENT_DEFAULT_REQUEST_TIMEOUT_MS;
    opts->poll_wait_s = P2P_CLIENT_DEFAULT_POLL_WAIT_S;
}

const char *p2p_call_status_name(p2p_call_status s) {
    switch (s) {
    case P2P_CALL_PUSHED:
        return "pushed";
    case P2P_CALL_QUEUED:
        return "queued";
    case P2P_CALL_RUNNING:
        return "running";
    case P2P_CALL_DONE:
        return "done";
    case P2P_CALL_FAILED:
        return "failed";
    case P2P_CALL_TERMINATED:
        return "terminated";
    }
    return "unknown";
}
