/* Option defaults (client.h). */
#include "client.h"

#include <string.h>

void p2p_client_options_init(p2p_client_options *opts) {
    memset(opts, 0, sizeof(*opts));
    opts->connect_timeout_ms = P2P_CLIENT_DEFAULT_CONNECT_TIMEOUT_MS;
    opts->request_timeout_ms = P2P_CLIENT_DEFAULT_REQUEST_TIMEOUT_MS;
    opts->poll_wait_s = P2P_CLIENT_DEFAULT_POLL_WAIT_S;
}
